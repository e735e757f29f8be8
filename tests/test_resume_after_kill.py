"""A `wdsp edit` killed with SIGKILL in the middle of an iteration, run again with the same
arguments, finishes the job with weights bit-identical to an uninterrupted run (real processes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from workspace_helpers import make_model_dir, write_corpus, write_facts

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def wdsp(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "wdsp_cli", *map(str, args)], env=ENV, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    return out


def in_process(*args) -> None:
    from typer.testing import CliRunner

    from wdsp_cli.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.stderr


def final_weights(ws: Path) -> dict:
    from wdsp_cli.workspace.checkout import checkout
    from wdsp_cli.workspace.store import Workspace

    return checkout(Workspace.open(ws)).model.state_dict()


def test_killed_edit_resumes_to_identical_weights(tmp_path):
    model = make_model_dir(tmp_path / "model")
    facts = write_facts(tmp_path / "facts.jsonl")
    corpus = write_corpus(tmp_path / "corpus.txt")
    edit_args = ["edit", facts, "--batch-size", 2, "--steps", 12, "--sp", "--json"]
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    for ws in (killed, straight):
        in_process("init", "--model", model, "-w", ws)
        in_process("covariance", "-w", ws, "--corpus", corpus, "--tokens", 2000)

    process = wdsp(*edit_args, "-w", killed)
    first = killed / "iterations" / "000001" / "record.json"
    deadline = time.monotonic() + 300
    while not first.exists():  # iteration 1 committed: the process is now inside iteration 2
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (killed / "iterations" / "000002").exists()  # killed inside iteration 2

    resumed = finish(wdsp(*edit_args, "-w", killed))
    in_process(*edit_args, "-w", straight)  # one torch thread here too (conftest), as in the subprocesses
    report = json.loads(resumed)
    assert report["head"] == 3 and [it["iteration"] for it in report["iterations"]][-1] == 3
    assert report["skipped"] + len(report["fast_forwarded"]) + len(report["iterations"]) == 3
    a, b = final_weights(killed), final_weights(straight)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not list((killed / "iterations").glob(".partial-*"))
