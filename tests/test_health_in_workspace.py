"""The health figures are stored with every evaluation: the held-out sample is chosen once, the base
model's own figures are ratio 1 and 100%, and drift is measured on every matrix edited so far."""

from __future__ import annotations

import json

import pytest
from workspace_helpers import blank_workspace, wdsp, write_facts

from wdsp_cli.evaluation.health import perplexity


@pytest.fixture(scope="module")
def edited(tmp_path_factory):
    root = tmp_path_factory.mktemp("health")
    ws = blank_workspace(root)
    wdsp("edit", write_facts(root / "f.jsonl", 4), "-w", ws, "--steps", 3, "--batch-size", 2)
    return ws


def test_evaluate_stores_health_and_the_sample_once(edited):
    from wdsp_cli.workspace.checkout import checkout
    from wdsp_cli.workspace.store import Workspace

    first = json.loads(wdsp("evaluate", "-w", edited, "-i", 1, "--json").stdout)["health"]
    sample = json.loads((edited / "health-sample.json").read_text())
    second = json.loads(wdsp("evaluate", "-w", edited, "-i", 2, "--json").stdout)["health"]
    assert json.loads((edited / "health-sample.json").read_text()) == sample  # chosen once
    assert len(sample["texts"]) == 64 and len(sample["prompts"]) == 64
    ws = Workspace.open(edited)
    base = checkout(ws, 0)
    assert sample["base"]["perplexity"] == pytest.approx(perplexity(base.model, base.tokenizer, sample["texts"])[0])
    at_two = checkout(ws, 2)
    assert second["perplexity"] == pytest.approx(perplexity(at_two.model, at_two.tokenizer, sample["texts"])[0])
    assert second["perplexity_ratio"] == pytest.approx(second["perplexity"] / sample["base"]["perplexity"])
    assert sorted(second["drift"]) == ["model.layers.1.mlp.down_proj", "model.layers.2.mlp.down_proj"]
    assert 0 < first["max_relative_frobenius"] < second["max_relative_frobenius"]  # drift accumulates
    assert 0 <= second["locality_prompts"] <= 100
    assert json.loads((edited / "evaluations" / "000002.json").read_text())["health"] == second


def test_no_health_skips_it_and_the_human_output_shows_it(edited):
    assert "health" not in json.loads(wdsp("evaluate", "-w", edited, "--no-health", "--json").stdout)
    assert "Health: perplexity" in wdsp("evaluate", "-w", edited).stdout


def test_report_and_status_show_health(edited, tmp_path):
    wdsp("evaluate", "-w", edited, "-i", 1)
    wdsp("evaluate", "-w", edited, "-i", 2)
    report = json.loads(wdsp("report", "-w", edited, "--plot", tmp_path / "curves.png", "--json").stdout)
    assert all("perplexity_ratio" in r["health"] and "drift" not in r["health"] for r in report["iterations"])
    assert (tmp_path / "curves-health.png").stat().st_size > 0 and report["health_plot"].endswith("curves-health.png")
    assert "ppl/base" in wdsp("report", "-w", edited).stdout
    status = json.loads(wdsp("status", "-w", edited, "--json").stdout)
    stored = json.loads((edited / "evaluations" / "000002.json").read_text())["health"]["perplexity_ratio"]
    assert status["iterations"][1]["perplexity_ratio"] == stored
