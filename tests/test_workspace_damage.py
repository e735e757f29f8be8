"""A damaged workspace, from the command line: a truncated diff, HEAD past the last iteration,
leftovers of killed writers; `wdsp check` lists each problem with its repair (exit 6), `status`
warns, and every command that reads a damaged diff exits 6."""

from __future__ import annotations

import json
import shutil

import pytest
from workspace_helpers import make_model_dir, wdsp, write_corpus, write_facts

FAST = ["--steps", "4"]



@pytest.fixture(scope="module")
def edited(tmp_path_factory):
    """A workspace with statistics and two committed iterations (HEAD = 2), and its facts file."""
    root = tmp_path_factory.mktemp("edited")
    model = make_model_dir(root / "tiny-llama")
    ws, facts = root / "ws", write_facts(root / "facts.jsonl")
    wdsp("init", "--model", model, "-w", ws)
    wdsp("covariance", "-w", ws, "--corpus", write_corpus(root / "corpus.txt"), "--tokens", 2000)
    wdsp("edit", facts, "-w", ws, "--batch-size", 3, *FAST)
    return ws, facts


@pytest.fixture()
def ws(edited, tmp_path):
    copy = tmp_path / "ws"
    shutil.copytree(edited[0], copy)
    return copy


def test_a_sound_workspace_checks_clean(ws):
    document = json.loads(wdsp("check", "-w", ws, "--json").stdout)
    assert document["ok"] and document["problems"] == [] and document["head"] == 2
    assert "iterations/000002/diff.safetensors" in document["checked"]
    assert any(name.startswith("statistics/layer-") for name in document["checked"])
    assert "is sound" in wdsp("check", "-w", ws).stdout
    assert json.loads(wdsp("status", "-w", ws, "--json").stdout)["problems"] == []


def test_a_truncated_diff_is_reported_and_every_reader_exits_6(ws, edited, tmp_path):
    path = ws / "iterations" / "000002" / "diff.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    status = wdsp("status", "-w", ws)
    assert "wdsp check" in status.stderr and "Warning" in status.stderr
    problems = json.loads(wdsp("status", "-w", ws, "--json").stdout)["problems"]
    assert [p["file"] for p in problems] == ["iterations/000002/diff.safetensors"]
    assert "wdsp rollback 1" in problems[0]["repair"]
    result = wdsp("check", "-w", ws, code=6)
    assert "iterations/000002/diff.safetensors" in result.stdout and "wdsp rollback 1" in result.stdout
    document = json.loads(wdsp("check", "-w", ws, "--json", code=6).stdout)
    assert not document["ok"] and document["problems"][0]["file"] == "iterations/000002/diff.safetensors"
    for args in (["evaluate"], ["export", tmp_path / "out"], ["probe", "The capital of France is"],
                 ["edit", edited[1], "--batch-size", 2, *FAST, "--no-resume"]):
        result = wdsp(*args, "-w", ws, code=6)
        assert "iteration 2" in result.stderr and "wdsp rollback 1" in result.stderr, result.stderr
    wdsp("rollback", 1, "-w", ws)
    wdsp("evaluate", "-w", ws, "--no-retention")


def test_a_corrupt_diff_of_the_right_size_is_found_by_check(ws):
    path = ws / "iterations" / "000001" / "diff.safetensors"
    data = bytearray(path.read_bytes())
    data[8:16] = b"\x00garbage"  # the header's first bytes: no longer JSON
    path.write_bytes(bytes(data))
    assert json.loads(wdsp("status", "-w", ws, "--json").stdout)["problems"] == []  # sizes look fine
    document = json.loads(wdsp("check", "-w", ws, "--json", code=6).stdout)
    assert [p["file"] for p in document["problems"]] == ["iterations/000001/diff.safetensors"]
    assert "wdsp rollback 0" in document["problems"][0]["repair"]


def test_head_past_the_last_iteration_says_to_roll_back(ws, edited):
    (ws / "HEAD").write_text("7\n")
    status = wdsp("status", "-w", ws)
    assert "HEAD = 7" in status.stdout and "wdsp rollback 2" in status.stderr
    result = wdsp("edit", edited[1], "-w", ws, *FAST, code=6)
    assert "wdsp rollback 2" in result.stderr and "backup" not in result.stderr, result.stderr
    assert "wdsp rollback 2" in wdsp("check", "-w", ws, code=6).stdout
    wdsp("rollback", 2, "-w", ws)
    wdsp("check", "-w", ws)


def test_damaged_statistics_and_files_each_get_their_repair(ws):
    layer = next((ws / "statistics").glob("layer-*.safetensors"))
    layer.write_bytes(layer.read_bytes()[:-8])
    (ws / "iterations" / "000001" / "requests.jsonl").write_text("{not json\n")
    (ws / "context-templates.json").write_text("[")
    document = json.loads(wdsp("check", "-w", ws, "--json", code=6).stdout)
    repairs = {p["file"]: p["repair"] for p in document["problems"]}
    assert "--force" in repairs[f"statistics/{layer.name}"] and "wdsp covariance" in repairs[f"statistics/{layer.name}"]
    assert "wdsp rollback 0" in repairs["iterations/000001/requests.jsonl"]
    assert "context-templates.json" in repairs


def test_leftovers_of_killed_writers_are_removed_by_the_next_command(ws):
    planted = [ws / ".HEAD.k1x2.tmp", ws / ".context-templates.json.a8f3.tmp", ws / ".config.json.zz.tmp",
               ws / "statistics" / ".layer-001.safetensors.123.abcd.tmp", ws / "evaluations" / ".000001.json.q.tmp"]
    (ws / "evaluations").mkdir(exist_ok=True)
    for path in planted:
        path.write_bytes(b"half")
    keep = ws / "notes.txt"
    keep.write_text("mine")
    assert sorted(json.loads(wdsp("check", "-w", ws, "--json").stdout)["leftovers"]) == \
        sorted(str(p.relative_to(ws)) for p in planted)
    wdsp("rollback", 1, "-w", ws)
    assert not any(p.exists() for p in planted) and keep.read_text() == "mine"


def test_a_damaged_config_is_a_warning_in_status_and_a_problem_in_check(ws):
    (ws / "config.json").write_text('{"method": ')
    problems = json.loads(wdsp("status", "-w", ws, "--json").stdout)["problems"]
    assert [p["file"] for p in problems] == ["config.json"] and "delete it" in problems[0]["repair"]
    document = json.loads(wdsp("check", "-w", ws, "--json", code=6).stdout)
    assert [p["file"] for p in document["problems"]] == ["config.json"]


def test_a_head_that_is_not_a_number_is_repaired_by_the_rollback_it_suggests(ws):
    (ws / "HEAD").write_text("seven\n")
    result = wdsp("status", "-w", ws, code=6)
    assert "wdsp rollback 2" in result.stderr
    assert "wdsp rollback 2" in wdsp("check", "-w", ws, code=6).stdout
    wdsp("rollback", 2, "-w", ws)
    wdsp("check", "-w", ws)


def test_the_same_edit_writes_the_same_bytes(edited, tmp_path):
    """sha256sum of diff.safetensors (and keys.safetensors) agrees between identical edits."""
    import hashlib

    def digests(root):
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted((root / "iterations").glob("0*/*.safetensors"))}

    original, facts = edited
    for name in ("a", "b"):
        copy = tmp_path / name
        shutil.copytree(original, copy)
        wdsp("rollback", 0, "-w", copy)
        wdsp("edit", facts, "-w", copy, "--batch-size", 3, *FAST, "--no-resume")
    # (not against ``original``: the module fixture ran before the one-thread fixture, and the
    # thread count may change the last bits of a float32 reduction)
    assert {"iterations/000002/diff.safetensors", "iterations/000002/keys.safetensors"} <= set(digests(tmp_path / "a"))
    assert digests(tmp_path / "a") == digests(tmp_path / "b")
