"""benchmarks/perf.py in its reduced mode (CI): the command works and the batched edit agrees
with the per-request reference (timings are not checked here; the full run prints them)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.real
def test_perf_reduced_runs_and_the_engine_agrees_with_the_reference(data_dir):
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "perf.py"), "--reduced", "--json"],
                         capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout)
    assert report["metrics_max_difference"] <= 1.0
    assert report["requests_per_pass"] == 2 and report["metrics_max_difference_unchunked"] <= 1.0
    assert report["diff_bytes_per_iteration"] < report["dense_bytes_per_iteration"] / 30
    for key in ("edit_batch_s", "edit_batch_reference_s", "covariance_tokens_per_s", "forward_tokens_per_s",
                "rollback_0_s", "rollback_5_s", "evaluate_requests_per_s", "edit_peak_rss_bytes", "edit_unchunked_peak_rss_bytes",
                "edit_unchunked_s", "bench_edits_per_hour", "bench_seconds_per_iteration"):
        assert report[key] > 0, key
    assert report["targets"]["bench_edits_per_hour"]["reached"] == report["bench_edits_per_hour"]
    assert report["targets"]["main_job_s"]["met"] is None  # not measured without --main-job
