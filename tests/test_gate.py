"""``wdsp edit --gate``: a batch is measured before HEAD moves; one that misses a threshold is set
aside in rejected/ (inspectable, never committed), the weights are taken back and the command
exits 8; one that passes is committed with its figures stored as its evaluation."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from workspace_helpers import blank_workspace, tree_digest, wdsp, write_facts

from wdsp_cli.errors import InputError
from wdsp_cli.jobs.gate import Gate


def test_gate_thresholds():
    figures = {"latest": {"efficacy": 90.0}, "health": {"perplexity_ratio": 1.2, "locality_prompts": 75.0},
               "all": {"score": 60.0}}
    assert Gate().failures(figures) == []
    assert Gate(efficacy=95).failures(figures) == ["efficacy 90% is not >= 95%"]
    assert Gate(perplexity_ratio=1.1, locality=80, retention=70).failures(figures) == [
        "perplexity / base 1.2x is not <= 1.1x", "unrelated prompts = base 75% is not >= 80%",
        "retention Score 60 is not >= 70"]
    assert Gate(retention=10).failures({"latest": {"efficacy": 90.0}, "health": {"perplexity_ratio": 1.0}}) == [
        "retention Score was not measured"]
    with pytest.raises(InputError, match="--gate-efficacy 120 must be within 0..100"):
        Gate(efficacy=120)


@pytest.fixture
def blank(tmp_path_factory):
    root = tmp_path_factory.mktemp("gate")
    ws = blank_workspace(root)
    return ws, write_facts(root / "facts.jsonl", 4)


def test_a_refused_batch_is_set_aside_and_the_model_is_untouched(blank, tmp_path):
    ws, facts = blank
    before = {k: v for k, v in tree_digest(ws).items() if not k.startswith("health-sample")}
    result = wdsp("edit", facts, "-w", ws, "--steps", 3, "-b", 4, "--gate-efficacy", 0, "--gate-perplexity", 0.5,
                  code=8)
    assert "did not pass the gate: perplexity / base 1" in result.stderr and "HEAD stays at 0" in result.stderr
    after = {k: v for k, v in tree_digest(ws).items() if not k.startswith(("rejected/", "health-sample"))}
    assert after == before  # nothing committed, HEAD where it was
    [candidate] = (ws / "rejected").iterdir()
    record = json.loads((candidate / "record.json").read_text())
    assert record["gate"]["gate"]["failures"] and record["gate"]["latest"]["requests"] == 4
    assert len((candidate / "requests.jsonl").read_text().splitlines()) == 4
    status = json.loads(wdsp("status", "-w", ws, "--json").stdout)
    assert status["rejected"] == [candidate.name] and status["pending_revert"] is None
    assert "Batches the gate refused" in wdsp("status", "-w", ws).stdout
    # the same batch without the gate: the committed diff is the candidate's, bit for bit (weights were restored)
    wdsp("edit", facts, "-w", ws, "--steps", 3, "-b", 4)
    kept, aside = load_file(str(ws / "iterations" / "000001" / "diff.safetensors")), \
        load_file(str(candidate / "diff.safetensors"))
    assert kept.keys() == aside.keys() and all(torch.equal(kept[k], aside[k]) for k in kept)


def test_a_passing_batch_is_committed_with_its_figures_as_its_evaluation(blank, tmp_path):
    ws, facts = blank
    result = wdsp("edit", facts, "-w", ws, "--steps", 3, "-b", 2, "--gate", "--gate-efficacy", 0,
                  "--gate-perplexity", 100, "--gate-locality", 0, "--gate-retention", 0, "--gate-sample", 3)
    assert "Gate: passed by iteration(s) 1, 2" in result.stdout
    stored = json.loads((ws / "evaluations" / "000002.json").read_text())
    assert stored["gate"]["failures"] == [] and stored["gate"]["sample"] == 3
    assert stored["all"]["requests"] == 3 and stored["all"]["edited"] == 4 and "perplexity_ratio" in stored["health"]
    assert not (ws / "rejected").exists()
    wdsp("edit", facts, "-w", ws, "--gate-efficacy", 120, code=2)
    shutil.rmtree(ws)
