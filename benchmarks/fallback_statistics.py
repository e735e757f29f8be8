"""What the offline fallback costs: covariance statistics from text the model writes itself
versus WikiText-2, compared by the quality of the same MEMIT edit.

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

from wdsp_cli.config import preset  # noqa: E402
from wdsp_cli.data.corpus import model_samples_corpus, open_corpus  # noqa: E402
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
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = load_model("smollm2-135m-instruct")
    config = preset(args.preset)
    requests = load_requests(DATA / "counterfact" / "counterfact_rome.jsonl", offset=args.offset, limit=args.count)
    templates = generate_context_templates(model, tok, 5, 10, seed=config.seed)
    corpora = {
        "wikitext2": open_corpus(DATA / "text" / "wikitext2_raw_test.txt"),
        "model-samples": model_samples_corpus(model, tok, 1000, seed=0),
    }
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "base": evaluate_counterfact(model, tok, requests)}
    for name, corpus in corpora.items():
        t = time.perf_counter()
        stats = compute_covariance(model, tok, config.layers, corpus, max_tokens=args.tokens)
        stats_s = time.perf_counter() - t
        moments = {l: s.second_moment for l, s in stats.items()}
        state = WeightState(model)
        snapshot = state.snapshot(edited_modules(model, config))
        edit_batch(model, tok, requests, config, moments, templates, state)
        metrics = evaluate_counterfact(model, tok, requests)
        state.restore(snapshot)
        result[name] = {"statistics_seconds": round(stats_s, 1), **{k: round(v, 2) for k, v in metrics.items()}}
        print(json.dumps({name: result[name]}), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
