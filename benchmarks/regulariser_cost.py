"""Seconds per batch with and without each regulariser, on one batch of CounterFact records
edited from the base model, same run (issue 3's cost figures).

    .venv/bin/python benchmarks/regulariser_cost.py --count 20 --methods memit
    .venv/bin/python benchmarks/regulariser_cost.py --variants none \
        --variant wd-exact-w0.1=wd:true,wd_mode:exact,wd_weight:0.1

Prints one JSON line per variant: seconds (total and per phase), ES/PS/NS/Score of the batch.
``--variant NAME=field:value,...`` adds a variant of EditConfig overrides (values parsed as JSON).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from overrides import parse_variant  # noqa: E402

from wdsp_cli.config import preset  # noqa: E402
from wdsp_cli.data.corpus import open_corpus  # noqa: E402
from wdsp_cli.data.requests import load_requests  # noqa: E402
from wdsp_cli.editing.batch import edit_batch, edited_modules  # noqa: E402
from wdsp_cli.evaluation.scoring import evaluate_counterfact  # noqa: E402
from wdsp_cli.model.loading import load_model  # noqa: E402
from wdsp_cli.model.weights import WeightState  # noqa: E402
from wdsp_cli.optimisation.prompts import generate_context_templates  # noqa: E402
from wdsp_cli.statistics.covariance import compute_covariance  # noqa: E402

VARIANTS = {"none": {}, "wd-exact": {"wd": True, "wd_mode": "exact"}, "wd-dirac": {"wd": True, "wd_mode": "dirac"},
            "wd-sinkhorn": {"wd": True, "wd_mode": "sinkhorn"}, "sp": {"sp": True}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--offset", type=int, default=100)
    ap.add_argument("--methods", default="memit,pmet")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--tokens", type=int, default=20_000)
    ap.add_argument("--variant", action="append", default=[], help="NAME=field:value,... (repeatable)")
    args = ap.parse_args()
    variants = {name: VARIANTS[name] for name in args.variants.split(",") if name}
    variants.update(parse_variant(spec) for spec in args.variant)
    model, tok = load_model("smollm2-135m-instruct")
    requests = load_requests(DATA / "counterfact" / "counterfact_rome.jsonl", offset=args.offset, limit=args.count)
    layers = sorted(set(preset("memit-smollm2").layers) | set(preset("pmet-smollm2").layers))
    stats = compute_covariance(model, tok, layers, open_corpus(DATA / "text" / "wikitext2_raw_test.txt"),
                               max_tokens=args.tokens)
    moments = {l: s.second_moment for l, s in stats.items()}
    templates = generate_context_templates(model, tok, 5, 10, seed=0)
    for method in args.methods.split(","):
        for variant, overrides in variants.items():
            config = preset(f"{method}-smollm2").replace(**overrides)
            state = WeightState(model)
            snapshot = state.snapshot(edited_modules(model, config))
            clock = time.perf_counter()
            edit = edit_batch(model, tok, requests, config, moments, templates, state)
            seconds = time.perf_counter() - clock
            metrics = evaluate_counterfact(model, tok, requests)
            state.restore(snapshot)
            print(json.dumps({"method": method, "variant": variant, "seconds": round(seconds, 1),
                              "timings_s": {k: round(v, 2) for k, v in edit.report["timings_s"].items()},
                              **{k: round(metrics[k], 1) for k in ("efficacy", "generalization", "locality", "score")}}),
                  flush=True)


if __name__ == "__main__":
    main()
