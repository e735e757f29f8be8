"""What the offline fallback costs: covariance statistics from text the model writes itself (now, or
the same text shipped as ``--corpus builtin``) versus WikiText-2, compared by the quality of the
same MEMIT edit, and whether the built-in text gives the fallback's statistics bit for bit.

    .venv/bin/python benchmarks/fallback_statistics.py --count 50 --json docs/sweeps/fallback-statistics.json

Both statistics use the same number of tokens; the edit (preset memit-smollm2) and the
CounterFact records (counterfact_rome.jsonl at --offset) are the same.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from machine import cpu_description  # noqa: E402

from wdsp_cli.config import preset  # noqa: E402
from wdsp_cli.data.corpus import builtin_corpus, model_samples_corpus, open_corpus  # noqa: E402
from wdsp_cli.data.requests import load_requests  # noqa: E402
from wdsp_cli.editing.batch import edit_batch, edited_modules  # noqa: E402
from wdsp_cli.evaluation.scoring import evaluate_counterfact  # noqa: E402
from wdsp_cli.model.loading import load_model  # noqa: E402
from wdsp_cli.model.weights import WeightState  # noqa: E402
from wdsp_cli.optimisation.prompts import generate_context_templates  # noqa: E402
from wdsp_cli.statistics.covariance import compute_covariance  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--offset", type=int, default=100)
    ap.add_argument("--count", type=int, default=50)
    ap.add_argument("--tokens", type=int, default=20_000)
    ap.add_argument("--preset", default="memit-smollm2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--corpora", default="wikitext2,model-samples,builtin")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = load_model("smollm2-135m-instruct")
    config = preset(args.preset)
    requests = load_requests(DATA / "counterfact" / "counterfact_rome.jsonl", offset=args.offset, limit=args.count)
    templates = generate_context_templates(model, tok, 5, 10, seed=config.seed)
    corpora = {
        "wikitext2": lambda: open_corpus(DATA / "text" / "wikitext2_raw_test.txt"),
        "model-samples": lambda: model_samples_corpus(model, tok, 1000, seed=0),
        "builtin": builtin_corpus,
    }
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "machine": cpu_description(),
              "base": evaluate_counterfact(model, tok, requests)}
    moments_of = {}
    for name in args.corpora.split(","):
        corpus = corpora[name]()
        t = time.perf_counter()
        stats = compute_covariance(model, tok, config.layers, corpus, max_tokens=args.tokens)
        stats_s = time.perf_counter() - t
        moments = moments_of[name] = {l: s.second_moment for l, s in stats.items()}
        state = WeightState(model)
        snapshot = state.snapshot(edited_modules(model, config))
        edit_batch(model, tok, requests, config, moments, templates, state)
        metrics = evaluate_counterfact(model, tok, requests)
        state.restore(snapshot)
        result[name] = {"statistics_seconds": round(stats_s, 1), **{k: round(v, 2) for k, v in metrics.items()}}
        print(json.dumps({name: result[name]}), flush=True)
    if {"model-samples", "builtin"} <= set(moments_of):
        a, b = moments_of["model-samples"], moments_of["builtin"]
        result["builtin_equals_model_samples"] = all(torch.equal(a[l], b[l]) for l in a)
        result["builtin_vs_model_samples_max_relative_difference"] = max(
            float((a[l] - b[l]).abs().max() / a[l].abs().max()) for l in a)
        print(json.dumps({k: result[k] for k in ("builtin_equals_model_samples",
                                                 "builtin_vs_model_samples_max_relative_difference")}), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
