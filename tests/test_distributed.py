"""Covariance statistics computed by two processes (gloo, CPU) equal one process's."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_models import tiny_llama
from workspace_helpers import write_corpus

from wdsp_cli.statistics.covariance import compute_covariance, load_layer_statistics

HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_give_the_statistics_of_one(tmp_path, tokenizer):
    corpus = write_corpus(tmp_path / "corpus.txt", lines=60)
    port = str(_free_port())
    workers = [subprocess.Popen([sys.executable, str(HERE / "distributed_worker.py"), str(corpus), str(tmp_path)],
                                env={**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                                     "MASTER_PORT": port, "OMP_NUM_THREADS": "1"},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for rank in (0, 1)]
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err[-2000:]
    one = compute_covariance(tiny_llama(), tokenizer, [1, 2], corpus.read_text().splitlines(), seq_len=16)
    for layer in (1, 2):
        two = load_layer_statistics(tmp_path / f"layer-{layer}.safetensors")
        assert two.token_count == one[layer].token_count and two.metadata["processes"] == "2"
        torch.testing.assert_close(two.second_moment, one[layer].second_moment, rtol=1e-5, atol=1e-6)


def test_data_parallel_without_a_process_group_says_how_to_launch(tokenizer):
    from wdsp_cli.errors import StatisticsError

    with pytest.raises(StatisticsError, match="torchrun"):
        compute_covariance(tiny_llama(), tokenizer, [1], ["some text"], data_parallel=True)


def test_wdsp_covariance_under_torchrun_writes_the_one_process_statistics(tmp_path):
    from typer.testing import CliRunner
    from workspace_helpers import make_model_dir

    from wdsp_cli.cli import app

    model = make_model_dir(tmp_path / "model")
    corpus = write_corpus(tmp_path / "corpus.txt", lines=60)
    one, two = tmp_path / "one", tmp_path / "two"
    for ws in (one, two):
        assert CliRunner().invoke(app, ["init", "--model", str(model), "-w", str(ws)]).exit_code == 0
    args = ["covariance", "--corpus", str(corpus), "--tokens", "1000000", "--layers", "1,2"]
    assert CliRunner().invoke(app, [*args, "-w", str(one)]).exit_code == 0
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_port", str(_free_port()), "-m", "wdsp_cli", *args, "-w", str(two)],
                         env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent)},
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    for layer in (1, 2):
        a = load_layer_statistics(one / "statistics" / f"layer-{layer:03d}.safetensors")
        b = load_layer_statistics(two / "statistics" / f"layer-{layer:03d}.safetensors")
        assert b.metadata["processes"] == "2" and a.token_count == b.token_count
        torch.testing.assert_close(b.second_moment, a.second_moment, rtol=1e-5, atol=1e-6)
    assert not (two / "iterations").exists()
