"""benchmarks/compare_grids.py: grids of one protocol merge; any other difference is refused by name."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from compare_grids import merge  # noqa: E402

SPEC = {"batch_size": 50, "iterations": 100, "requests": "cf.jsonl", "offset": 0, "tokens": 50000,
        "methods": ["memit"], "variants": ["none"], "seeds": [0]}


def grid(runs, **spec):
    return {"model": {"model_type": "llama"}, "spec": {**SPEC, **spec}, "runs": {r: {"iterations": []} for r in runs}}


def test_grids_of_one_protocol_merge_with_their_variants_and_origin():
    merged = merge({"cf-b50": grid(["memit-none-seed0"]),
                    "cf-b50-anchor": grid(["memit-anchor-seed0"], variants=["anchor"])})
    assert list(merged["runs"]) == ["memit-none-seed0", "memit-anchor-seed0"]
    assert merged["spec"]["variants"] == ["none", "anchor"] and merged["spec"]["batch_size"] == 50
    assert merged["grids"] == {"memit-none-seed0": "cf-b50", "memit-anchor-seed0": "cf-b50-anchor"}


def test_another_protocol_or_a_repeated_run_is_refused():
    with pytest.raises(ValueError, match="b100 is not the protocol of b50: batch_size differ"):
        merge({"b50": grid(["a"]), "b100": grid(["b"], batch_size=100)})
    with pytest.raises(ValueError, match="run a is in two grids"):
        merge({"one": grid(["a"]), "two": grid(["a"])})
