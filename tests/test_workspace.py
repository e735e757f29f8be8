"""The workspace on disk: creation, schema, iterations committed atomically, HEAD, archive."""

from __future__ import annotations

import json

import pytest
import torch
from workspace_helpers import tree_digest

from wdsp_cli.data.requests import (
    EditRequest,
    LocalityProbe,
    request_from_dict,
    request_to_dict,
)
from wdsp_cli.errors import EditError, WorkspaceError
from wdsp_cli.model.weights import LayerUpdate, WeightDiff
from wdsp_cli.workspace.store import SCHEMA_VERSION, Workspace

MODEL = {"source": {"kind": "folder", "source": "/nowhere"}, "fingerprint": "sha256:" + "0" * 64,
         "dtype": "float32", "model_type": "llama", "num_layers": 4, "hidden_size": 64}
REQUEST = EditRequest("The capital of {} is", "France", "Berlin", "Paris", ("France's capital is",),
                      (LocalityProbe("The capital of Germany is", "Berlin"),), "r1", "facts.jsonl:1", "facts")


def diff(value: float = 1.0) -> WeightDiff:
    return WeightDiff((LayerUpdate("model.layers.1.mlp.down_proj", torch.full((64, 2), value), torch.ones(128, 2)),))


def test_request_round_trip_is_exact():
    assert request_from_dict(json.loads(json.dumps(request_to_dict(REQUEST)))) == REQUEST


def test_create_open_and_refuse_twice(tmp_path):
    ws = Workspace.create(tmp_path / "ws", MODEL)
    assert ws.head == 0 and ws.iterations() == []
    assert Workspace.open(tmp_path / "ws").info["schema_version"] == SCHEMA_VERSION
    with pytest.raises(WorkspaceError, match="already a workspace"):
        Workspace.create(tmp_path / "ws", MODEL)


def test_commit_moves_head_and_keeps_everything(tmp_path):
    ws = Workspace.create(tmp_path, MODEL)
    for t in (1, 2):
        ws.commit_iteration(t, diff(t), [REQUEST], {"job": {"id": "x", "batch": t - 1}})
    assert ws.head == 2 and ws.iterations() == [1, 2]
    assert ws.requests(2) == [REQUEST] and torch.equal(ws.diff(2).updates[0].left, diff(2).updates[0].left)
    assert ws.record(1)["job"] == {"id": "x", "batch": 0} and ws.record(1)["diff_bytes"] > 0
    ws.set_head(0)
    with pytest.raises(WorkspaceError, match="cannot follow HEAD"):  # later iterations must be archived first
        ws.commit_iteration(1, diff(), [REQUEST], {})
    moved, folder = ws.archive_after(0)
    assert moved == [1, 2] and (folder / "000002" / "record.json").exists() and ws.iterations() == []


def test_non_finite_update_is_refused_before_anything_is_written(tmp_path):
    ws = Workspace.create(tmp_path, MODEL)
    before = tree_digest(tmp_path)
    with pytest.raises(EditError, match="not finite"):
        ws.commit_iteration(1, diff(float("nan")), [REQUEST], {})
    assert tree_digest(tmp_path) == before and ws.head == 0


def test_unknown_iteration_and_damaged_head(tmp_path):
    ws = Workspace.create(tmp_path, MODEL)
    with pytest.raises(WorkspaceError, match="iteration 3 is not in the workspace"):
        ws.set_head(3)
    (tmp_path / "HEAD").write_text("three")
    with pytest.raises(WorkspaceError, match="not an iteration number"):
        ws.head


def test_partial_iterations_are_removed_under_the_lock(tmp_path):
    ws = Workspace.create(tmp_path, MODEL)
    partial = tmp_path / "iterations" / ".partial-000001-dead"
    partial.mkdir(parents=True)
    (partial / "diff.safetensors").write_bytes(b"torn")
    assert ws.iterations() == []
    with ws.lock("test"):
        assert not partial.exists()


def test_leftover_temporaries_are_removed_under_the_lock(tmp_path):
    ws = Workspace.create(tmp_path, MODEL)
    (tmp_path / "statistics").mkdir()
    planted = [tmp_path / ".HEAD.x1y2z3.tmp", tmp_path / ".context-templates.json.abcd.tmp",
               tmp_path / ".config.json.9q.tmp", tmp_path / "statistics" / ".layer-002.safetensors.77.ef01.tmp"]
    for path in planted:
        path.write_bytes(b"torn")
    kept = [tmp_path / "notes.tmp", tmp_path / ".mine.tmp", tmp_path / ".notes.txt.bak.tmp",
            tmp_path / "statistics" / "layer-002.safetensors"]
    for path in kept:
        path.write_bytes(b"not ours to delete")
    with ws.lock("test"):
        assert not any(p.exists() for p in planted) and all(p.exists() for p in kept)
    planted[0].write_bytes(b"torn")
    assert ws.leftovers() == [planted[0]]


def test_an_older_workspace_is_migrated_once_under_the_lock(tmp_path, monkeypatch):
    from wdsp_cli.errors import WorkspaceBusy
    from wdsp_cli.workspace import store

    Workspace.create(tmp_path, MODEL)
    calls = []

    def to_2(ws):
        assert ws.info["schema_version"] == 1
        with pytest.raises(WorkspaceBusy), Workspace(ws.root, ws.info).lock("another"):  # held while it runs
            pass
        calls.append(ws.root)
        (ws.root / "HEAD").write_text("0\n")

    monkeypatch.setattr(store, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(store, "MIGRATIONS", {1: to_2})
    assert Workspace.open(tmp_path).info["schema_version"] == 2
    assert Workspace.open(tmp_path).info["schema_version"] == 2 and calls == [tmp_path]
    info = json.loads((tmp_path / "workspace.json").read_text())
    assert info["schema_version"] == 2 and info["migrated"][0]["from"] == 1


def test_a_failed_migration_leaves_the_version_and_one_missing_is_refused(tmp_path, monkeypatch):
    from wdsp_cli.workspace import store

    Workspace.create(tmp_path, MODEL)
    before = (tmp_path / "workspace.json").read_bytes()

    def broken(ws):
        raise OSError("disk full")

    monkeypatch.setattr(store, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(store, "MIGRATIONS", {1: broken})
    with pytest.raises(OSError):
        Workspace.open(tmp_path)
    assert (tmp_path / "workspace.json").read_bytes() == before
    monkeypatch.setattr(store, "MIGRATIONS", {})
    with pytest.raises(WorkspaceError, match="no migration"):
        Workspace.open(tmp_path)


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_follow_the_umask(tmp_path, umask, mode):
    import os
    import stat

    previous = os.umask(umask)
    try:
        ws = Workspace.create(tmp_path / "ws", MODEL)
        ws.commit_iteration(1, diff(), [REQUEST], {}, keys={1: torch.ones(2, 128)})
        ws.save_evaluation(1, {"latest": {}})
    finally:
        os.umask(previous)
    files = [p for p in (tmp_path / "ws").rglob("*") if p.is_file() and p.name != ".lock"]
    assert len(files) == 7
    assert {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode) for p in files} == \
        {str(p.relative_to(tmp_path)): mode for p in files}


_WRITER = """
import hashlib, sys, torch
sys.path.insert(0, {tests!r})
from test_workspace import diff, REQUEST, MODEL
from wdsp_cli.statistics.covariance import LayerStatistics, save_layer_statistics
from wdsp_cli.workspace.store import Workspace

ws = Workspace.create(sys.argv[1], MODEL)
ws.commit_iteration(1, diff(2.0), [REQUEST], {{}}, keys={{3: torch.ones(2, 128), 1: torch.zeros(2, 128)}})
meta = {{"model": MODEL["fingerprint"], "corpus": '{{"kind": "file"}}', "seq_len": "256", "max_tokens": "9",
        "created_at": "2026-01-01T00:00:00+00:00", "wdsp_version": "x", "zeta": "1", "alpha": "2"}}
(ws.root / "statistics").mkdir(exist_ok=True)
save_layer_statistics(ws.statistics_path(1),
                      LayerStatistics(1, "model.layers.1.mlp.down_proj", torch.eye(128), 9, "float32", meta))
ws.save_derived("nullspace", 1, torch.eye(128), {{"threshold": "0.01", "statistics_created_at": "t"}})
for name in ("iterations/000001/diff.safetensors", "iterations/000001/keys.safetensors",
             "statistics/layer-001.safetensors", "statistics/nullspace-001.safetensors"):
    if not (ws.root / name).exists():
        continue
    print(name, hashlib.sha256((ws.root / name).read_bytes()).hexdigest())
"""


def test_safetensors_files_are_byte_reproducible_across_processes(tmp_path):
    """safetensors orders metadata as a per-process hash map: four processes used to disagree."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    tests = str(Path(__file__).resolve().parent)
    script = _WRITER.format(tests=tests)
    digests = set()
    for seed in range(4):
        env = {**os.environ, "PYTHONHASHSEED": str(seed)}
        out = subprocess.run([sys.executable, "-c", script, str(tmp_path / f"ws{seed}")], env=env, check=True,
                             capture_output=True, text=True, cwd=Path(tests).parent).stdout
        digests.add(out)
    assert len(digests) == 1, digests
    from wdsp_cli.files.tensorfile import read_metadata

    loaded = Workspace.open(tmp_path / "ws0")
    assert torch.equal(loaded.diff(1).updates[0].left, diff(2.0).updates[0].left)
    assert sorted(loaded.keys(1)) == [1, 3] and torch.equal(loaded.derived("nullspace", 1), torch.eye(128))
    assert read_metadata(loaded.statistics_path(1))["alpha"] == "2"


def test_a_damaged_iteration_file_is_a_workspace_error_naming_the_rollback(tmp_path):
    ws = Workspace.create(tmp_path, MODEL)
    for t in (1, 2):
        ws.commit_iteration(t, diff(t), [REQUEST], {}, keys={1: torch.ones(2, 128)})
    files = ws.iteration_files(2)
    files["diff"].write_bytes(files["diff"].read_bytes()[:64])
    files["keys"].write_bytes(b"")
    files["requests"].write_text("{")
    for read in (ws.diff, ws.keys, ws.requests):
        with pytest.raises(WorkspaceError, match="iteration 2 is damaged") as caught:
            read(2)
        assert caught.value.exit_code == 6 and "wdsp rollback 1" in caught.value.hint
    (tmp_path / "HEAD").write_text("5\n")
    with pytest.raises(WorkspaceError, match="HEAD names iteration 5") as caught:
        ws.record(5)
    assert "wdsp rollback 2" in caught.value.hint and "backup" not in caught.value.hint


def test_tensor_files_load_in_safetensors_and_match_its_bytes_with_the_header_sorted():
    import struct

    from safetensors.torch import load, save

    from wdsp_cli.files.tensorfile import tensor_file_bytes

    tensors = {"b": torch.randn(3, 5), "a": torch.arange(7, dtype=torch.float32), "c": torch.zeros(0, 4),
               "s": torch.tensor(2.5)}
    meta = {"z": "1", "format": "x", "k": "{\"é\": 1}"}
    ours = tensor_file_bytes(tensors, meta)
    theirs = save(tensors, metadata=meta)
    (n,) = struct.unpack("<Q", theirs[:8])
    canonical = json.dumps(json.loads(theirs[8:8 + n]), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert ours[8:].startswith(canonical.encode()) and ours[8 + struct.unpack("<Q", ours[:8])[0]:] == theirs[8 + n:]
    mixed = {"w": torch.randn(4, 2, dtype=torch.float64), "h": torch.randn(3).to(torch.bfloat16),
             "i": torch.arange(5), "m": torch.tensor([True, False]), "v": torch.randn(6, 4)[:, 1]}
    back = load(tensor_file_bytes(mixed))
    assert back.keys() == mixed.keys() and all(torch.equal(back[k], mixed[k]) for k in mixed)
    assert tensor_file_bytes(mixed) == tensor_file_bytes(dict(reversed(list(mixed.items()))))


def test_a_torn_null_space_projection_is_computed_again(tmp_path):
    from wdsp_cli.jobs.statistics import load_derived
    from wdsp_cli.methods.nullspace import null_space_projection

    ws = Workspace.create(tmp_path, MODEL)
    (tmp_path / "statistics").mkdir()
    moment = torch.diag(torch.tensor([1.0, 1.0, 1e-9, 1e-9]))
    calls = []

    def compute():
        calls.append(1)
        return null_space_projection(moment, 1e-2)[0]

    first = load_derived(ws, "nullspace", 1, {"threshold": "0.01"}, compute)
    assert torch.equal(load_derived(ws, "nullspace", 1, {"threshold": "0.01"}, compute), first) and len(calls) == 1
    path = ws.derived_path("nullspace", 1)
    path.write_bytes(path.read_bytes()[:40])
    again = load_derived(ws, "nullspace", 1, {"threshold": "0.01"}, compute)
    assert len(calls) == 2 and torch.equal(first, again) and torch.equal(ws.derived("nullspace", 1), first)
    load_derived(ws, "nullspace", 1, {"threshold": "0.02"}, compute)  # another threshold: computed again
    assert len(calls) == 3


def test_create_is_refused_while_another_command_holds_the_folder(tmp_path):
    from wdsp_cli.errors import WorkspaceBusy

    with Workspace(tmp_path, {}).lock("another init"):
        with pytest.raises(WorkspaceBusy, match="another init"):
            Workspace.create(tmp_path, MODEL)
    assert not (tmp_path / "workspace.json").exists() and not (tmp_path / "HEAD").exists()
    assert Workspace.create(tmp_path, MODEL).info["model"] == MODEL  # once the lock is free
