"""The device a workspace records at ``wdsp init --device`` is where its statistics are computed
(``wdsp covariance`` in one process) and where ``wdsp bench --device`` runs. Without a GPU the
device check is faked: model loading records the device it was asked for and loads on the CPU."""

from __future__ import annotations

import json

import pytest
import torch
from workspace_helpers import make_model_dir, wdsp, write_corpus, write_facts


@pytest.fixture()
def asked(monkeypatch):
    """Devices model loading was asked for; the model itself is loaded on the CPU."""
    from wdsp_cli.model import loading

    real, devices = loading.load_model, []

    def load_model(source, **kwargs):
        devices.append(kwargs.get("device"))
        return real(source, **{**kwargs, "device": "cpu"})

    monkeypatch.setattr(loading, "load_model", load_model)
    return devices


def _recorded_on(ws, device: str) -> None:
    """What `wdsp init --device DEVICE` records (init itself cannot load on a device this machine lacks)."""
    info = json.loads((ws / "workspace.json").read_text())
    info["model"]["placement"] = {"device": device, "device_map": None}
    (ws / "workspace.json").write_text(json.dumps(info))


def test_covariance_computes_on_the_device_the_workspace_records(tmp_path, asked):
    ws = tmp_path / "ws"
    wdsp("init", "--model", make_model_dir(tmp_path / "model"), "-w", ws)
    _recorded_on(ws, "cuda:7")
    asked.clear()
    wdsp("covariance", "-w", ws, "--corpus", write_corpus(tmp_path / "c.txt"), "--tokens", 500)
    assert asked == ["cuda:7"]


def test_bench_loads_on_the_device_it_is_given(tmp_path, asked):
    from wdsp_cli.bench.protocol import BenchSpec, run_bench

    spec = BenchSpec(str(write_facts(tmp_path / "facts.jsonl", 2)), batch_size=2, iterations=1, methods=("memit",),
                     variants=("none",), model=str(make_model_dir(tmp_path / "model")),
                     corpus=str(write_corpus(tmp_path / "c.txt")), tokens=500, steps=2)
    run_bench(tmp_path / "bench", spec, device="cuda:3")
    assert asked and set(asked) == {"cuda:3"}
    placement = json.loads((tmp_path / "bench" / "runs" / "memit-none-seed0" / "workspace.json").read_text())
    assert placement["model"]["placement"]["device"] == "cuda:3"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_covariance_on_a_real_gpu(tmp_path):
    ws = tmp_path / "ws"
    wdsp("init", "--model", make_model_dir(tmp_path / "model"), "--device", "cuda", "-w", ws)
    report = json.loads(wdsp("covariance", "-w", ws, "--corpus", write_corpus(tmp_path / "c.txt"), "--tokens", 500,
                             "--json").stdout)
    assert report["computed"] and json.loads((ws / "workspace.json").read_text())["model"]["placement"]["device"] == "cuda"
