"""The norm stabilisers beyond the paper (docs/stabilisers.md): norm anchoring of the target values
and the norm budget on the accumulated update, on the tiny model, through the library and the CLI."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from workspace_helpers import blank_workspace, wdsp, write_facts

from wdsp_cli.config import EditConfig
from wdsp_cli.errors import InputError
from wdsp_cli.regularisers.norm_anchor import anchored_targets, reference_norm
from wdsp_cli.regularisers.norm_budget import budget_decay


def test_anchoring_rescales_the_solved_value_and_moves_the_target_by_as_much():
    v0, delta, h = torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 8) * 5
    targets = h + delta
    out = anchored_targets(targets, v0, delta, reference=2.0)
    moved = v0 + delta + (out - targets)  # the new v*
    assert torch.allclose(moved.norm(dim=1), torch.full((4,), 2.0))
    assert torch.allclose(torch.nn.functional.cosine_similarity(moved, v0 + delta), torch.ones(4), atol=1e-6)
    values = torch.diag(torch.arange(1.0, 21.0))  # row norms 1..20: the largest 5% (one) is left out
    assert reference_norm(values) == pytest.approx(10.0)


def test_budget_decay_is_one_inside_the_budget_and_brings_the_drift_back_to_it():
    assert budget_decay(0.5, 100.0, 0.01) == 1.0 and budget_decay(1.0, 100.0, 0.01) == 1.0
    assert budget_decay(4.0, 100.0, 0.01) == pytest.approx(0.25)
    with pytest.raises(InputError, match="--norm-budget 0 must be > 0"):
        EditConfig().replace(norm_budget=0.0)


def test_settings_added_later_leave_job_ids_of_existing_jobs_alone():
    from wdsp_cli.jobs.edit import job_id

    plain = EditConfig()
    assert "norm_anchor" not in plain.identity() and "norm_anchor" in plain.to_dict()
    assert EditConfig.from_dict(plain.to_dict()) == plain
    anchored = plain.replace(norm_anchor=True)
    assert anchored.identity()["norm_anchor"] is True and anchored.norm.anchor
    assert job_id([], plain, 1) != job_id([], anchored, 1)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("stabilisers")
    ws = blank_workspace(root)
    return root, ws


def test_a_norm_budget_binds_fades_older_edits_and_replays_bit_for_bit(workspace, tmp_path):
    from safetensors import safe_open

    from wdsp_cli.config import default_config_for
    from wdsp_cli.data.requests import load_requests
    from wdsp_cli.jobs.edit import run_edit
    from wdsp_cli.model.weights import FORMAT_WITH_DECAY
    from wdsp_cli.workspace.checkout import checkout, load_base
    from wdsp_cli.workspace.store import Workspace

    root, ws_path = workspace
    ws_copy = tmp_path / "ws"
    shutil.copytree(ws_path, ws_copy)
    ws = Workspace.open(ws_copy)
    budget = 1e-3  # far under what one batch moves the tiny model: every iteration after the first shrinks
    config = default_config_for(ws.model["model_type"], ws.model["num_layers"], "memit").replace(
        v_num_grad_steps=3, norm_budget=budget)
    requests = load_requests(write_facts(tmp_path / "f.jsonl", 6))
    current = checkout(ws, 0, base=load_base(ws))
    run_edit(ws, requests, config, 2, current=current)
    assert ws.head == 3
    records = [ws.record(t)["report"]["norm_budget_decay"] for t in (1, 2, 3)]
    assert set(records[0].values()) == {1.0}  # nothing to shrink before the first edit
    assert all(0 < s < 1 for r in records[1:] for s in r.values())
    for module in records[0]:
        drift, base = current.state.drift(module)
        last = next(u for u in ws.diff(3).updates if u.module == module)
        assert drift <= budget * base + float(last.dense().norm()) * (1 + 1e-5)
    with safe_open(str(ws_copy / "iterations" / "000003" / "diff.safetensors"), framework="pt") as handle:
        assert handle.metadata()["format"] == FORMAT_WITH_DECAY
    replayed = checkout(ws, 3)  # a fresh process's view: base + (decay, diff) x 3
    for module, master in current.state.master.items():
        assert torch.equal(replayed.state.master[module], master), module


def test_norm_anchor_from_the_command_line_keeps_one_reference_measured_on_the_base(workspace, tmp_path):
    root, ws_path = workspace
    facts = write_facts(tmp_path / "f.jsonl", 4)
    anchored, late = tmp_path / "anchored", tmp_path / "late"
    shutil.copytree(ws_path, anchored)
    shutil.copytree(ws_path, late)
    wdsp("edit", facts, "-w", anchored, "--steps", 3, "-b", 2, "--norm-anchor", "--norm-budget", "0.5", "--wd", "--sp")
    first, second = (json.loads((anchored / "iterations" / f"00000{t}" / "record.json").read_text()) for t in (1, 2))
    assert second["config"]["norm_anchor"] is True and second["config"]["norm_budget"] == 0.5
    reference = first["report"]["norm_anchor"]["reference"]
    assert reference > 0 and second["report"]["norm_anchor"]["reference"] == reference  # chosen once
    assert len(second["report"]["norm_anchor"]["solved_norm"]) == 2 and second["engine"]["version"]
    # anchoring switched on after a plain edit: the reference is measured on the base weights, so it
    # is the one a fresh workspace would take from the same batch
    wdsp("edit", facts, "-w", late, "--steps", 3, "-b", 2, "--limit", 2)
    wdsp("edit", facts, "-w", late, "--steps", 3, "-b", 2, "--offset", 2, "--norm-anchor")
    fresh = tmp_path / "fresh"
    shutil.copytree(ws_path, fresh)
    wdsp("edit", facts, "-w", fresh, "--steps", 3, "-b", 2, "--offset", 2, "--norm-anchor")
    measured = json.loads((late / "iterations" / "000002" / "record.json").read_text())["report"]["norm_anchor"]
    expected = json.loads((fresh / "iterations" / "000001" / "record.json").read_text())["report"]["norm_anchor"]
    assert measured["reference"] == pytest.approx(expected["reference"], rel=1e-5)
    wdsp("edit", facts, "-w", anchored, "--norm-budget", "-1", code=2)


def test_bench_variants_compose_the_stabilisers():
    from wdsp_cli.bench.variants import variant_label, variant_settings

    assert variant_settings("none") == {} and variant_label("none") == ""
    assert variant_settings("wd+sp+anchor+budget0.05") == {"wd": True, "sp": True, "norm_anchor": True,
                                                          "norm_budget": 0.05}
    assert variant_label("wd+sp+budget0.05") == "+WD+SP+BUDGET0.05"
    assert variant_settings("mpes+anchor") == {"early_stop": "most-probable", "norm_anchor": True}
    assert variant_settings("mpes+bf16") == {"early_stop": "most-probable", "autocast_dtype": "bfloat16"}
    with pytest.raises(InputError, match="unknown variant 'l1'"):
        variant_settings("l1")
    with pytest.raises(InputError, match="part 'budget'"):
        variant_settings("budget")
