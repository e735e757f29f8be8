"""The command line on a tiny Llama saved to a folder: init, covariance, edit, evaluate,
rollback, status, probe, export; --json documents; errors leave the workspace unchanged."""

from __future__ import annotations

import json

import pytest
import torch
from workspace_helpers import (
    make_model_dir,
    tree_digest,
    wdsp,
    write_corpus,
    write_facts,
)

FAST = ["--steps", "4"]



def as_json(result) -> dict:
    return json.loads(result.stdout)  # stdout holds exactly one JSON document


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("model") / "tiny-llama")


@pytest.fixture()
def ready(tmp_path, model_dir):
    """A workspace with statistics, plus a facts file and a corpus."""
    ws = tmp_path / "ws"
    corpus = write_corpus(tmp_path / "corpus.txt")
    wdsp("init", "--model", model_dir, "-w", ws)
    wdsp("covariance", "-w", ws, "--corpus", corpus, "--tokens", 2000)
    return ws, write_facts(tmp_path / "facts.jsonl"), corpus


def weights(ws, iteration=None):
    from wdsp_cli.workspace.checkout import checkout
    from wdsp_cli.workspace.store import Workspace

    model = checkout(Workspace.open(ws), iteration).model
    return {k: v.clone() for k, v in model.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_init_covariance_edit_evaluate_status_as_json(ready, model_dir):
    ws, facts, corpus = ready
    again = as_json(wdsp("covariance", "-w", ws, "--corpus", corpus, "--tokens", 2000, "--json"))
    assert again["computed"] == [] and again["reused"] == [1, 2]
    report = as_json(wdsp("edit", facts, "-w", ws, "--batch-size", 4, *FAST, "--json"))
    assert [it["iteration"] for it in report["iterations"]] == [1, 2] and report["head"] == 2
    assert [it["requests"] for it in report["iterations"]] == [4, 2]
    evaluation = as_json(wdsp("evaluate", "-w", ws, "--json"))
    assert evaluation["iteration"] == 2 and evaluation["latest"]["requests"] == 2
    assert evaluation["all"]["requests"] == 6 and 0 <= evaluation["all"]["efficacy"] <= 100
    assert 0 <= evaluation["all"]["locality_base"] <= 100 and evaluation["latest"]["protocol"] == "counterfact"
    status = as_json(wdsp("status", "-w", ws, "--json"))
    assert status["head"] == 2 and [s["layer"] for s in status["statistics"]] == [1, 2]
    assert status["iterations"][1]["score"] == evaluation["latest"]["score"]
    human = wdsp("status", "-w", ws)
    assert "HEAD = 2" in human.stdout


def test_workspace_from_environment_variable(ready, monkeypatch):
    ws, _, _ = ready
    monkeypatch.setenv("WDSP_WORKSPACE", str(ws))
    assert as_json(wdsp("status", "--json"))["workspace"] == str(ws)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_model_at_t_is_base_plus_diffs_in_float32_cast_once(tmp_path, model_dir, dtype):
    from wdsp_cli.model.architectures import module_by_name, weight_out_in
    from wdsp_cli.workspace.checkout import load_base
    from wdsp_cli.workspace.store import Workspace

    ws, facts = tmp_path / "ws", write_facts(tmp_path / "facts.jsonl")
    wdsp("init", "--model", model_dir, "--dtype", dtype, "-w", ws)
    wdsp("covariance", "-w", ws, "--corpus", write_corpus(tmp_path / "corpus.txt"), "--tokens", 2000)
    wdsp("edit", facts, "-w", ws, "--batch-size", 2, *FAST)
    workspace = Workspace.open(ws)
    model, _ = load_base(workspace)
    expected = {}
    for t in (1, 2, 3):
        for update in workspace.diff(t).updates:
            base = weight_out_in(module_by_name(model, update.module)).detach().float()
            expected[update.module] = expected.get(update.module, base.clone()) + update.dense()
    edited = weights(ws, 3)
    for module, value in expected.items():
        key = next(k for k in edited if k.startswith(module) and k.endswith("weight"))
        stored = edited[key] if edited[key].shape == value.shape else edited[key].T
        assert torch.equal(stored, value.to(stored.dtype))


def test_rollback_equals_a_run_that_stopped_there_then_forward_and_edit_again(ready, tmp_path, model_dir):
    ws, facts, corpus = ready
    wdsp("edit", facts, "-w", ws, "--batch-size", 2, *FAST)  # iterations 1-3
    after_three = weights(ws)
    out = as_json(wdsp("rollback", 1, "-w", ws, "--json"))
    assert out == {"head": 1, "previous_head": 3, "kept_after_head": [2, 3]}
    only_one = tmp_path / "only-one"
    wdsp("init", "--model", model_dir, "-w", only_one)
    wdsp("covariance", "-w", only_one, "--corpus", corpus, "--tokens", 2000)
    wdsp("edit", facts, "-w", only_one, "--batch-size", 2, "--limit", 2, *FAST)
    assert same(weights(ws), weights(only_one))
    assert not same(weights(ws), after_three)
    wdsp("rollback", 3, "-w", ws)  # forward again: nothing was lost
    assert same(weights(ws), after_three)
    wdsp("rollback", 1, "-w", ws)
    other = write_facts(tmp_path / "other.jsonl", 3)
    report = as_json(wdsp("edit", other, "-w", ws, "--batch-size", 3, *FAST, "--json"))
    assert report["archived"] == [2, 3] and report["iterations"][0]["iteration"] == 2
    assert len(list((ws / "archive").glob("*/000003/record.json"))) == 1
    status = as_json(wdsp("status", "-w", ws, "--json"))
    assert [it["iteration"] for it in status["iterations"]] == [1, 2] and status["archived_sets"]


def test_rerunning_a_finished_job_does_nothing_and_no_resume_edits_again(ready):
    ws, facts, _ = ready
    wdsp("edit", facts, "-w", ws, "--batch-size", 3, *FAST)
    again = as_json(wdsp("edit", facts, "-w", ws, "--batch-size", 3, *FAST, "--json"))
    assert again["iterations"] == [] and again["head"] == 2
    wdsp("rollback", 1, "-w", ws)
    forward = as_json(wdsp("edit", facts, "-w", ws, "--batch-size", 3, *FAST, "--json"))
    assert forward["fast_forwarded"] == [2] and forward["iterations"] == [] and forward["head"] == 2
    fresh = as_json(wdsp("edit", facts, "-w", ws, "--batch-size", 3, *FAST, "--no-resume", "--json"))
    assert [it["iteration"] for it in fresh["iterations"]] == [3, 4]


def test_requests_per_pass_saves_memory_without_changing_the_job_or_the_result(ready, tmp_path, model_dir):
    ws, facts, corpus = ready
    wdsp("edit", facts, "-w", ws, "--batch-size", 6, *FAST)
    again = as_json(wdsp("edit", facts, "-w", ws, "--batch-size", 6, *FAST, "--requests-per-pass", 1, "--json"))
    assert again["iterations"] == [] and again["head"] == 1  # the same job: nothing to do
    chunked = tmp_path / "chunked"
    wdsp("init", "--model", model_dir, "-w", chunked)
    wdsp("covariance", "-w", chunked, "--corpus", corpus, "--tokens", 2000)
    wdsp("edit", facts, "-w", chunked, "--batch-size", 6, *FAST, "--requests-per-pass", 1)
    a, b, base = weights(ws), weights(chunked), weights(ws, 0)
    for name in a:
        change = (a[name] - base[name]).norm()
        assert (a[name] - b[name]).norm() <= 1e-3 * change + 1e-6, name
    assert any((a[name] - base[name]).norm() > 0 for name in a)
    wdsp("edit", facts, "-w", ws, "--requests-per-pass", -1, code=2)


def test_autocast_is_part_of_the_job_and_is_validated(ready):
    ws, facts, _ = ready
    first = as_json(wdsp("edit", facts, "-w", ws, "--batch-size", 6, *FAST, "--autocast", "bfloat16", "--json"))
    assert first["config"]["autocast_dtype"] == "bfloat16" and first["head"] == 1
    # the same facts in float32 are another job: they are edited again, on top
    plain = as_json(wdsp("edit", facts, "-w", ws, "--batch-size", 6, *FAST, "--autocast", "none", "--json"))
    assert plain["config"]["autocast_dtype"] is None and plain["head"] == 2
    before = tree_digest(ws)
    wdsp("edit", facts, "-w", ws, "--autocast", "int8", code=2)
    assert tree_digest(ws) == before


def test_diff_is_factor_form_and_status_reports_its_size(ready):
    ws, facts, _ = ready
    report = as_json(wdsp("edit", facts, "-w", ws, "--batch-size", 6, *FAST, "--json"))
    it = report["iterations"][0]
    d_in, d_out, layers, b = 128, 64, 2, 6
    assert it["factor_bytes"] == layers * (d_in + d_out) * b * 4
    assert it["dense_bytes"] == layers * d_in * d_out * 4
    assert it["factor_bytes"] < it["diff_bytes"] < it["factor_bytes"] + 4096  # + the safetensors header
    assert as_json(wdsp("status", "-w", ws, "--json"))["iterations"][0]["diff_bytes"] == it["diff_bytes"]


def test_probe_shows_base_and_head_side_by_side(ready):
    ws, facts, _ = ready
    wdsp("edit", facts, "-w", ws, "--batch-size", 6, *FAST)
    out = as_json(wdsp("probe", "The capital of France is", "-w", ws, "--base", "--top", 3,
                       "--max-new-tokens", 4, "--json"))
    assert [r["iteration"] for r in out["results"]] == [0, 1]
    for row in out["results"]:
        assert len(row["top"]) == 3 and 0 < row["top"][0]["probability"] <= 1
    assert out["results"][0]["top"] != out["results"][1]["top"]
    assert "HEAD" in wdsp("probe", "The capital of France is", "-w", ws, "--base").stdout


def test_export_loads_with_plain_transformers(ready, tmp_path):
    from transformers import AutoModelForCausalLM

    ws, facts, _ = ready
    wdsp("edit", facts, "-w", ws, "--batch-size", 6, *FAST)
    out = as_json(wdsp("export", tmp_path / "exported", "-w", ws, "--json"))
    loaded = AutoModelForCausalLM.from_pretrained(out["path"])
    assert same({k: v for k, v in loaded.state_dict().items()}, weights(ws))
    wdsp("export", tmp_path / "exported", "-w", ws, code=2)  # never overwrites


def test_a_second_mutating_command_fails_at_once(ready):
    from wdsp_cli.workspace.store import Workspace

    ws, facts, _ = ready
    with Workspace.open(ws).lock("a test"):
        result = wdsp("edit", facts, "-w", ws, *FAST, code=7)
        assert "being changed by `a test`" in result.stderr
        wdsp("rollback", 0, "-w", ws, code=7)
    wdsp("rollback", 0, "-w", ws)


def test_a_different_base_model_is_refused(ready, tmp_path):
    ws, facts, _ = ready
    info = json.loads((ws / "workspace.json").read_text())
    other = make_model_dir(tmp_path / "other-model", seed=1)
    info["model"]["source"]["source"] = str(other)
    (ws / "workspace.json").write_text(json.dumps(info))
    before = tree_digest(ws)
    result = wdsp("edit", facts, "-w", ws, *FAST, code=3)
    assert "not this workspace's base model" in result.stderr and "Hint:" in result.stderr
    assert tree_digest(ws) == before


def test_a_newer_schema_is_refused_with_a_hint(ready):
    ws, _, _ = ready
    info = json.loads((ws / "workspace.json").read_text())
    (ws / "workspace.json").write_text(json.dumps({**info, "schema_version": 99}))
    result = wdsp("status", "-w", ws, code=6)
    assert "schema version 99" in result.stderr and "upgrade wdsp" in result.stderr


def test_no_workspace_says_how_to_make_one(tmp_path):
    result = wdsp("status", "-w", tmp_path / "nowhere", code=6)
    assert "no workspace" in result.stderr and "wdsp init" in result.stderr


BAD_FACTS = {
    "malformed": ('{"prompt": "x is", "subject": "x", "target": \n', 2),
    "empty": ("\n# nothing here\n", 2),
}


@pytest.mark.parametrize("kind", sorted(BAD_FACTS))
def test_bad_facts_leave_the_workspace_unchanged(ready, tmp_path, kind):
    ws, _, _ = ready
    path = tmp_path / f"{kind}.jsonl"
    path.write_text(BAD_FACTS[kind][0])
    before = tree_digest(ws)
    result = wdsp("edit", path, "-w", ws, code=BAD_FACTS[kind][1])
    assert result.stderr.startswith("Error:") and "Hint:" in result.stderr and result.stdout == ""
    assert tree_digest(ws) == before


@pytest.mark.parametrize("args, code, message", [
    (["edit", "{facts}", "--method", "rome"], 2, "unknown method"),
    (["edit", "{facts}", "--layers", "1,9"], 2, "layer 9 does not exist"),
    (["edit", "{facts}", "--wd", "--wd-mode", "l2"], 2, "--wd-mode 'l2' is not one of"),
    (["edit", "{facts}", "--batch-size", "0"], 2, "batch size"),
    (["edit", "{facts}", "--layers", "0,1"], 4, "no covariance statistics for layer(s) [0]"),
    (["rollback", "7"], 6, "iteration 7 is not in the workspace"),
    (["evaluate"], 6, "nothing to evaluate"),
    (["covariance", "--corpus", "{missing}"], 2, "missing.txt"),
    (["covariance", "--corpus", "{corpus}", "--tokens", "1500"], 4, "--force"),
    (["covariance", "--corpus", "{facts}"], 2, "--text-field"),
    (["covariance", "--tokens", "0"], 2, "--tokens must be positive"),
    (["rollback", "-3"], 6, "HEAD is 0, so -3 would go back past the base model"),
])
def test_bad_inputs_give_a_clear_error_and_change_nothing(ready, tmp_path, args, code, message):
    ws, facts, corpus = ready
    args = [a.format(facts=facts, corpus=corpus, missing=tmp_path / "missing.txt") for a in args]
    before = tree_digest(ws)
    result = wdsp(*args, "-w", ws, *(FAST if args[0] == "edit" else []), code=code)
    assert message in result.stderr, result.stderr
    assert "Hint:" in result.stderr and tree_digest(ws) == before


def test_a_full_disk_during_commit_leaves_the_workspace_as_it_was(ready, monkeypatch):
    import errno

    from wdsp_cli.workspace import store as workspace_module

    ws, facts, _ = ready
    wdsp("edit", facts, "-w", ws, "--batch-size", 6, *FAST)
    before = tree_digest(ws)
    real = workspace_module.atomic_write_text

    def full_disk(path, text):
        if str(path).endswith("record.json"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, text)

    monkeypatch.setattr(workspace_module, "atomic_write_text", full_disk)
    other = ws.parent / "other.jsonl"
    other.write_text(facts.read_text().replace("Berlin", "Madrid"))
    result = wdsp("edit", other, "-w", ws, "--batch-size", 6, *FAST, code=1)
    assert "No space left" in result.stderr
    after = tree_digest(ws)
    assert {k: v for k, v in after.items() if k not in ("config.json",)} == \
        {k: v for k, v in before.items() if k not in ("config.json",)}
    assert not list((ws / "iterations").glob(".partial-*"))


def test_cli_reference_is_up_to_date():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    check = subprocess.run([sys.executable, str(root / "scripts" / "cli_reference.py"), "--check"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


def test_report_reads_stored_evaluations_and_plots(ready, tmp_path):
    ws, facts, _ = ready
    wdsp("report", "-w", ws, code=2)  # nothing evaluated yet
    wdsp("edit", facts, "-w", ws, "--batch-size", 3, *FAST)
    wdsp("rollback", 1, "-w", ws)
    wdsp("evaluate", "-w", ws)
    wdsp("rollback", 2, "-w", ws)
    stored = as_json(wdsp("evaluate", "-w", ws, "--json"))
    out = as_json(wdsp("report", "-w", ws, "--plot", tmp_path / "curves.png", "--json"))
    assert [r["iteration"] for r in out["iterations"]] == [1, 2]
    assert out["iterations"][1]["score"] == stored["latest"]["score"]
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def no_model_loading(monkeypatch):
    """Make any load of model weights fail the test: what follows must be refused before it."""
    from wdsp_cli.model import loading

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(loading, "load_model", refuse)


def test_a_prompt_longer_than_the_model_context_is_refused_before_model_work(ready, tmp_path, monkeypatch):
    ws, facts, _ = ready
    records = [json.loads(line) for line in facts.read_text().splitlines()]
    records[2]["prompt"] = "Toyota, " + "a company that makes cars, " * 20 + "is headquartered in"  # > 256 tokens
    long = tmp_path / "long.jsonl"
    long.write_text("".join(json.dumps(r) + "\n" for r in records))
    before = tree_digest(ws)
    no_model_loading(monkeypatch)
    result = wdsp("edit", long, "-w", ws, *FAST, code=2)
    assert f"{long}:3: the prompt + target is" in result.stderr and "at most 256" in result.stderr
    assert "Hint: shorten that record" in result.stderr and tree_digest(ws) == before
    records[2]["prompt"] = "Toyota is headquartered in"
    records[4]["neighbours"] = [{"prompt": "Rome, " * 200 + "is in", "answer": "Italy"}]
    long.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert f"{long}:5: the neighbour 1 + answer is" in wdsp("edit", long, "-w", ws, *FAST, code=2).stderr


def test_rollback_takes_negative_numbers_relative_to_head(ready):
    ws, facts, _ = ready
    wdsp("edit", facts, "-w", ws, "--batch-size", 2, *FAST)
    assert as_json(wdsp("rollback", "-1", "-w", ws, "--json"))["head"] == 2
    assert as_json(wdsp("rollback", "-w", ws, "-2", "--json")) == {"head": 0, "previous_head": 2,
                                                                      "kept_after_head": [1, 2, 3]}
    result = wdsp("rollback", "-1", "-w", ws, code=6)
    assert "go back past the base model" in result.stderr and "Hint:" in result.stderr
    assert "counts back from HEAD" in wdsp("rollback", "--help").stdout


def test_init_refuses_an_existing_workspace_before_loading_the_model(ready, model_dir, monkeypatch):
    ws, _, _ = ready
    no_model_loading(monkeypatch)
    result = wdsp("init", "--model", model_dir, "-w", ws, code=6)
    assert "is already a workspace" in result.stderr and "Hint:" in result.stderr


def test_missing_statistics_hint_is_a_command_to_paste(ready):
    ws, facts, corpus = ready
    result = wdsp("edit", facts, "-w", ws, "--layers", "0,1", *FAST, code=4)
    assert f"Hint: compute them first: wdsp covariance -w {ws} --layers 0,1 --corpus {corpus} --tokens 2000" \
        in result.stderr


def test_progress_is_plain_lines_on_stderr_when_it_is_not_a_terminal(tmp_path, model_dir):
    ws, corpus = tmp_path / "ws", write_corpus(tmp_path / "corpus.txt")
    wdsp("init", "--model", model_dir, "-w", ws)
    result = wdsp("covariance", "-w", ws, "--corpus", corpus, "--tokens", 2000, "--json")
    assert as_json(result)["computed"] == [1, 2]
    lines = result.stderr.splitlines()
    assert lines[0].startswith("statistics: layers [1, 2], 2000 tokens of ")
    assert any(line.startswith("statistics: ") and "(100%)" in line for line in lines)
    assert 2 <= sum(" tokens (" in line for line in lines) <= 11  # about every 10%, not every batch
    result = wdsp("edit", write_facts(tmp_path / "facts.jsonl"), "-w", ws, "--batch-size", 4, "--steps", 20, "--json")
    assert [it["iteration"] for it in as_json(result)["iterations"]] == [1, 2]
    lines = result.stderr.splitlines()
    assert lines[0].startswith("edit: 6 request(s)")
    assert "iteration 1 (batch 1/2, 4 requests): optimising targets, 20 steps" in lines
    assert "iteration 2 (batch 2/2, 2 requests): optimising targets, 20 steps" in lines
    steps = [line for line in lines if line.startswith("iteration 1: step ")]
    assert steps and len(steps) <= 10 and all(line.endswith("active)") for line in steps)
    assert lines.index("iteration 2 (batch 2/2, 2 requests): optimising targets, 20 steps") > \
        next(i for i, line in enumerate(lines) if line.startswith("committed iteration 1:"))


def test_argument_and_lock_errors_never_import_torch(ready, model_dir, tmp_path):
    """Refusals, and status (statistics headers read without safetensors' torch reader), answer in
    well under a second: no torch (~2.5 s to import) before them."""
    import subprocess
    import sys

    from wdsp_cli.workspace.store import Workspace

    ws, facts, _ = ready
    script = f"""
import sys
from typer.testing import CliRunner
from wdsp_cli.cli import app
for args, code in [
    (["rollback", "-1", "-w", {str(ws)!r}], 7),
    (["edit", {str(tmp_path / "missing.jsonl")!r}, "-w", {str(ws)!r}], 7),
    (["covariance", "-w", {str(ws)!r}], 7),
    (["evaluate", "-w", {str(ws)!r}], 7),
    (["covariance", "--tokens", "0", "-w", {str(ws)!r}], 2),
    (["edit", {str(facts)!r}, "--method", "rome", "-w", {str(ws)!r}], 2),
    (["edit", {str(facts)!r}, "--requests-per-pass", "-1", "-w", {str(ws)!r}], 2),
    (["probe", "The capital of France is", "-i", "9", "-w", {str(ws)!r}], 6),
    (["init", "--model", {str(model_dir)!r}, "-w", {str(ws)!r}], 6),
    (["status", "-w", {str(ws)!r}], 0),
    (["status", "--json", "-w", {str(ws)!r}], 0),
    (["edit", {str(facts)!r}, "--sp-dropout", "1", "-w", {str(ws)!r}], 2),
    (["edit", {str(facts)!r}, "--set", "v_lr=0", "-w", {str(ws)!r}], 2),
]:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == code, (args, result.exit_code, result.stderr)
print("torch" in sys.modules)
"""
    with Workspace.open(ws).lock("a test"):
        run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False"


def test_os_errors_get_a_hint_that_fits_them(capsys):
    import typer

    from wdsp_cli.cli.common import handles_errors

    for error, hint in ((FileNotFoundError(2, "No such file or directory", "runs/x/bench.md"), "check the path"),
                        (PermissionError(13, "Permission denied", "ws/HEAD"), "fix permissions")):
        @handles_errors
        def command():
            raise error

        with pytest.raises(typer.Exit) as exit_:
            command()
        assert exit_.value.exit_code == 1 and hint in capsys.readouterr().err
