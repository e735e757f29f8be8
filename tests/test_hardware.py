"""--autocast auto picks bfloat16 only where the hardware computes it natively (AMX or AVX512-BF16),
and the edit records the type it ran, not "auto"."""

from __future__ import annotations

import json

import pytest
from workspace_helpers import make_model_dir, wdsp, write_corpus, write_facts

from wdsp_cli.model import hardware


@pytest.mark.parametrize("flags, expected", [
    ({"avx2", "avx512f", "avx512_bf16"}, "bfloat16"), ({"avx2", "avx512f", "amx_bf16", "amx_tile"}, "bfloat16"),
    ({"avx2"}, None), ({"avx2", "avx512f", "avx512_vnni"}, None), (set(), None)])
def test_native_autocast_follows_the_cpu_flags(flags, expected):
    assert hardware.native_autocast("cpu", flags) == expected


@pytest.mark.parametrize("flags, recorded", [({"avx2", "avx512_bf16"}, "bfloat16"), ({"avx2"}, None)])
def test_edit_with_autocast_auto_records_the_resolved_type(tmp_path, monkeypatch, flags, recorded):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: set(flags))
    ws = tmp_path / "ws"


    wdsp("init", "--model", make_model_dir(tmp_path / "model"), "-w", ws)
    wdsp("covariance", "-w", ws, "--corpus", write_corpus(tmp_path / "c.txt"), "--tokens", 1000)
    result = wdsp("edit", write_facts(tmp_path / "f.jsonl", 2), "-w", ws, "--steps", 2, "--autocast", "auto", "--json")
    assert json.loads(result.stdout)["config"]["autocast_dtype"] == recorded
    assert f"--autocast auto: {recorded or 'none'}" in result.stderr
    record = json.loads((ws / "iterations" / "000001" / "record.json").read_text())
    assert record["config"]["autocast_dtype"] == recorded
