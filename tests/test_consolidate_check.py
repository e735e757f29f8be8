"""benchmarks/consolidate_check.py on a tiny workspace: it measures the model at T and the joint
solve of all facts in force from the base weights, and writes nothing to the workspace."""

import json
import subprocess
import sys
from pathlib import Path

from workspace_helpers import blank_workspace, tree_digest, wdsp, write_facts

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "consolidate_check.py"


def test_joint_solve_is_measured_and_the_workspace_is_untouched(tmp_path):
    ws = blank_workspace(tmp_path)
    wdsp("edit", write_facts(tmp_path / "f.jsonl", 4), "-w", ws, "--steps", 3, "--batch-size", 2)
    wdsp("evaluate", "-w", ws)  # chooses the health sample
    before = tree_digest(ws)
    out = subprocess.run([sys.executable, str(SCRIPT), str(ws), "--sample", "3"], capture_output=True, text=True,
                         check=True)
    report = json.loads(out.stdout)
    assert tree_digest(ws) == before
    assert (report["iteration"], report["requests"], report["sample"]) == (2, 4, 3)
    for model in ("at_t", "joint"):
        assert set(report[model]["retention"]) == {"requests", "efficacy", "generalization", "locality", "score"}
        assert report[model]["retention"]["requests"] == 3  # the whole sample
        assert report[model]["perplexity_ratio"] > 0 and report[model]["max_relative_frobenius"] > 0
    assert len(report["joint"]["update_norms"]) == 2  # the tiny preset's two edited layers
    assert 0 <= report["joint"]["value_gap"] < 1  # closer to T's values than the base model is


def test_a_workspace_without_a_health_sample_is_refused(tmp_path):
    ws = blank_workspace(tmp_path)
    wdsp("edit", write_facts(tmp_path / "f.jsonl", 2), "-w", ws, "--steps", 3)
    out = subprocess.run([sys.executable, str(SCRIPT), str(ws)], capture_output=True, text=True)
    assert out.returncode != 0 and "run `wdsp evaluate` on it once" in out.stderr
