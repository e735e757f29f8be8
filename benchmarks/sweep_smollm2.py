"""Hyper-parameter sweep for the SmolLM2 defaults: edit one batch of CounterFact records
with each configuration from the same base model and report ES/PS/NS/Score and time.

    .venv/bin/python benchmarks/sweep_smollm2.py --offset 100 --count 50 --json docs/sweeps/memit.json

Covariance statistics for layers 0..15 are computed once on WikiText-2 (raw test) and cached.
Records are taken from counterfact_rome.jsonl at --offset (away from the records the tests use).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))

from wdsp_cli.config import EditConfig  # noqa: E402
from wdsp_cli.data.corpus import open_corpus  # noqa: E402
from wdsp_cli.data.requests import load_requests  # noqa: E402
from wdsp_cli.editing.batch import edit_batch, edited_modules  # noqa: E402
from wdsp_cli.evaluation.scoring import evaluate_counterfact  # noqa: E402
from wdsp_cli.model.loading import load_model  # noqa: E402
from wdsp_cli.model.weights import WeightState  # noqa: E402
from wdsp_cli.optimisation.prompts import generate_context_templates  # noqa: E402
from wdsp_cli.statistics.covariance import (  # noqa: E402
    compute_covariance,
    load_layer_statistics,
    save_layer_statistics,
)


def statistics(model, tok, layers, folder: Path, tokens: int) -> dict[int, torch.Tensor]:
    folder.mkdir(parents=True, exist_ok=True)
    missing = [l for l in layers if not (folder / f"layer_{l}.safetensors").exists()]
    if missing:
        t = time.perf_counter()
        corpus = open_corpus(DATA / "text" / "wikitext2_raw_test.txt")
        stats = compute_covariance(model, tok, missing, corpus, max_tokens=tokens)
        for l, s in stats.items():
            save_layer_statistics(folder / f"layer_{l}.safetensors", s)
        print(f"covariance for {missing}: {time.perf_counter() - t:.1f}s", file=sys.stderr)
    return {l: load_layer_statistics(folder / f"layer_{l}.safetensors").second_moment for l in layers}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--offset", type=int, default=100)
    ap.add_argument("--count", type=int, default=50)
    ap.add_argument("--tokens", type=int, default=100_000)
    ap.add_argument("--stats", type=Path, default=Path("/tmp/wdsp-sweep-stats"))
    ap.add_argument("--method", default="memit")
    ap.add_argument("--layers", default="2-6,4-8,6-10")
    ap.add_argument("--lam", default="2000,15000")
    ap.add_argument("--clamp", default="0.75,4")
    ap.add_argument("--lr", default="0.5")
    ap.add_argument("--steps", default="25")
    ap.add_argument("--kl", default="0.0625")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = load_model(args.model)
    requests = load_requests(DATA / "counterfact" / "counterfact_rome.jsonl", offset=args.offset, limit=args.count)
    layer_sets = [tuple(range(int(a), int(b) + 1)) for a, b in (s.split("-") for s in args.layers.split(","))]
    covs = statistics(model, tok, sorted({l for s in layer_sets for l in s}), args.stats, args.tokens)
    templates = generate_context_templates(model, tok, 5, 10, seed=0)
    base = evaluate_counterfact(model, tok, requests)
    print(json.dumps({"base": base}), flush=True)
    rows = []
    grid = itertools.product(layer_sets, [float(x) for x in args.lam.split(",")],
                             [float(x) for x in args.clamp.split(",")], [float(x) for x in args.lr.split(",")],
                             [int(x) for x in args.steps.split(",")], [float(x) for x in args.kl.split(",")])
    for layers, lam, clamp, lr, steps, kl in grid:
        config = EditConfig(method=args.method, layers=layers, mom2_update_weight=lam, clamp_norm_factor=clamp,
                            v_lr=lr, v_num_grad_steps=steps, kl_factor=kl)
        state = WeightState(model)
        snapshot = state.snapshot(edited_modules(model, config))
        t = time.perf_counter()
        edit = edit_batch(model, tok, requests, config, covs, templates, state)
        seconds = time.perf_counter() - t
        metrics = evaluate_counterfact(model, tok, requests)
        state.restore(snapshot)
        row = {"layers": list(layers), "lambda": lam, "clamp": clamp, "v_lr": lr, "steps": steps, "kl": kl,
               "seconds": round(seconds, 1), "timings": edit.report["timings_s"],
               "mean_updates": sum(edit.report["updates"]) / len(requests),
               **{k: round(v, 2) for k, v in metrics.items()}}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "base": base,
                                         "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
