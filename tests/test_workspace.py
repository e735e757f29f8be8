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
