"""How large one batch's update is under WD, SP and their settings (issue 16: why MEMIT+WD+SP drifts faster).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/update_norms.py [--variants none,wd,sp,wd+sp,sp:sp_dropout=0]

Each variant edits the same first B = 50 CounterFact records into the base SmolLM2 (same statistics,
templates and seed as benchmarks/perf.py). A variant is a ``wdsp bench`` variant name, optionally with
``:name=value`` settings after it (e.g. ``sp:sp_dropout=0``: SP with pruning only). Per variant it
prints one JSON entry: per edited matrix ||Delta W||_F / ||W_0||_F, the mean norm of the solved values'
change at the target point (||delta_i||, after SP where it is on), and ES/PS/NS/Score.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_description  # noqa: E402
from perf import DATA, edit_inputs  # noqa: E402

from wdsp_cli import ENGINE_VERSION  # noqa: E402
from wdsp_cli.bench.variants import variant_settings  # noqa: E402
from wdsp_cli.config import preset  # noqa: E402
from wdsp_cli.data.requests import load_requests  # noqa: E402
from wdsp_cli.editing.batch import edit_batch, edited_modules  # noqa: E402
from wdsp_cli.evaluation.scoring import evaluate_counterfact  # noqa: E402
from wdsp_cli.methods import method  # noqa: E402
from wdsp_cli.model.architectures import template_for  # noqa: E402
from wdsp_cli.model.loading import load_model  # noqa: E402
from wdsp_cli.model.weights import WeightState  # noqa: E402


def parse_variant(text: str) -> dict:
    """"sp:sp_dropout=0" -> the bench variant's settings with sp_dropout = 0.0."""
    name, *overrides = text.split(":")
    settings = variant_settings(name)
    for item in overrides:
        key, _, value = item.partition("=")
        settings[key] = json.loads(value)
    return settings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default="none,wd,sp,wd+sp,sp:sp_dropout=0")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--tokens", type=int, default=20_000)
    args = ap.parse_args()
    config = preset("memit-smollm2")
    model, tok = load_model("smollm2-135m-instruct")
    requests = load_requests(DATA / "counterfact" / "counterfact_easyedit.part1.jsonl", limit=args.batch)
    moments, templates = edit_inputs(model, tok, config, args.tokens)
    report = {"engine": ENGINE_VERSION, "batch": args.batch, "threads": torch.get_num_threads(),
              "machine": cpu_description(), "variants": {}}
    for variant in args.variants.split(","):
        cfg = config.replace(**parse_variant(variant))
        state = WeightState(model)
        modules = edited_modules(model, cfg)
        snapshot = state.snapshot(modules)
        edit = edit_batch(model, tok, requests, cfg, moments, templates, state)
        drift = {m: state.drift(m) for m in modules}
        target = method(cfg.method).target(template_for(model), cfg.z_layer)  # where SP acts
        metrics = evaluate_counterfact(model, tok, requests)
        state.restore(snapshot)
        report["variants"][variant] = {
            "relative_frobenius": {m: moved / base for m, (moved, base) in drift.items()},
            "mean_delta_norm": float(edit.residuals.delta[target].norm(dim=1).mean()),
            "metrics": {k: metrics[k] for k in ("efficacy", "generalization", "locality", "score")}}
        print(f"{variant}: max ||dW||/||W0|| {max(m / b for m, b in drift.values()):.4f}, "
              f"mean ||delta|| {report['variants'][variant]['mean_delta_norm']:.3f}, Score {metrics['score']:.2f}",
              file=sys.stderr, flush=True)
    print(json.dumps(report, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
