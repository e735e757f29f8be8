"""The norm stabilisers beyond the paper (docs/stabilisers.md): norm anchoring of the target values
and the norm budget on the accumulated update, on the tiny model, through the library and the CLI."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from workspace_helpers import make_model_dir, wdsp, write_corpus, write_facts

from wdsp_cli.config import EditConfig
from wdsp_cli.errors import InputError
from wdsp_cli.regularisers.norm_anchor import anchor_norms
from wdsp_cli.regularisers.norm_budget import budget_decay


def test_anchor_keeps_the_direction_and_takes_the_reference_norm():
    targets, reference = torch.randn(4, 8), torch.randn(4, 8) * 3
    targets[2] = 0
    out = anchor_norms(targets, reference)
    assert torch.allclose(out[[0, 1, 3]].norm(dim=1), reference[[0, 1, 3]].norm(dim=1))
    cosine = torch.nn.functional.cosine_similarity(out[[0, 1, 3]], targets[[0, 1, 3]])
    assert torch.allclose(cosine, torch.ones(3), atol=1e-6) and torch.equal(out[2], torch.zeros(8))


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
    ws = root / "ws"
    wdsp("init", "--model", make_model_dir(root / "model"), "-w", ws)
    wdsp("covariance", "-w", ws, "--corpus", write_corpus(root / "c.txt"), "--tokens", 1000)
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


def test_norm_anchor_from_the_command_line_rescales_the_targets(workspace, tmp_path):
    root, ws_path = workspace
    ws = tmp_path / "ws"
    shutil.copytree(ws_path, ws)
    wdsp("edit", write_facts(tmp_path / "f.jsonl", 4), "-w", ws, "--steps", 3, "-b", 2, "--norm-anchor",
         "--norm-budget", "0.5", "--wd", "--sp")
    record = json.loads((ws / "iterations" / "000002" / "record.json").read_text())
    assert record["config"]["norm_anchor"] is True and record["config"]["norm_budget"] == 0.5
    scales = record["report"]["norm_anchor"]["scale"]
    assert len(scales) == 2 and all(s > 0 for s in scales) and any(abs(s - 1) > 1e-4 for s in scales)
    assert record["engine"]["version"]
    wdsp("edit", write_facts(tmp_path / "f.jsonl", 4), "-w", ws, "--norm-budget", "-1", code=2)


def test_bench_variants_compose_the_stabilisers():
    from wdsp_cli.bench.protocol import variant_label, variant_settings

    assert variant_settings("none") == {} and variant_label("none") == ""
    assert variant_settings("wd+sp+anchor+budget0.05") == {"wd": True, "sp": True, "norm_anchor": True,
                                                          "norm_budget": 0.05}
    assert variant_label("wd+sp+budget0.05") == "+WD+SP+BUDGET0.05"
    with pytest.raises(InputError, match="unknown variant 'l1'"):
        variant_settings("l1")
    with pytest.raises(InputError, match="part 'budget'"):
        variant_settings("budget")
