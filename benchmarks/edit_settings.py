"""Time and peak memory of one B = 50 MEMIT edit on the default model under several engine settings,
all in one run (issue 6: which requests-per-pass default meets both the 5x and the 3 GiB target).

    .venv/bin/python benchmarks/edit_settings.py [--variants 20:unfrozen,20,25,20:bf16] [--batch 50]

A variant is ``reference`` (the per-request loop of benchmarks/perf.py; every other variant then
gets ``speedup_vs_reference``, measured in the same run) or ``N[:unfrozen][:bf16][:mpes[K]]``:
N requests per forward/backward (0: all at once);
``unfrozen`` runs every decoder block at every step (the frozen-block shortcut off); ``bf16`` runs the
model under ``torch.autocast(bfloat16)``; ``mpes``/``mpesK`` stops each request K (default 3) forwards
after its targets are top-1 on every prompt (``--early-stop most-probable``). Same requests, statistics and templates as benchmarks/perf.py; prints
one JSON document: per variant the edit's seconds, breakdown, peak RSS (VmHWM, reset before the edit)
and ES/PS/NS/Score.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_description  # noqa: E402
from perf import DATA, edit_inputs, timed_edit  # noqa: E402

from wdsp_cli.config import preset  # noqa: E402
from wdsp_cli.data.requests import load_requests  # noqa: E402
from wdsp_cli.model.loading import load_model  # noqa: E402
from wdsp_cli.optimisation import targets as residuals  # noqa: E402


@contextlib.contextmanager
def unfrozen(on: bool):
    """With ``on``: no frozen blocks (every block runs at every step; the prefix cache stays)."""
    saved = residuals.precompute

    def without_frozen_blocks(model, input_ids, lengths, lookup, points=(), *args, **kwargs):
        return saved(model, input_ids, lengths, lookup, (), *args, **kwargs)

    if on:
        residuals.precompute = without_frozen_blocks
    try:
        yield
    finally:
        residuals.precompute = saved


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default="20:unfrozen,20,25,20:bf16")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--tokens", type=int, default=20_000)
    ap.add_argument("--offset", type=int, default=0, help="First CounterFact record (0: the benchmark's requests).")
    args = ap.parse_args()
    config = preset("memit-smollm2")
    model, tok = load_model("smollm2-135m-instruct")
    requests = load_requests(DATA / "counterfact" / "counterfact_easyedit.part1.jsonl", offset=args.offset,
                             limit=args.batch)
    moments, templates = edit_inputs(model, tok, config, args.tokens)
    report = {"batch": args.batch, "offset": args.offset, "threads": torch.get_num_threads(), "machine": cpu_description(), "variants": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in args.variants.split(","):
            if variant == "reference":
                run = timed_edit(model, tok, requests, config, moments, templates, True, Path(tmp))
                run.pop("diff")
                report["variants"][variant] = run
                print(f"reference: {run['seconds']:.1f} s, Score {run['metrics']['score']:.2f}", file=sys.stderr,
                      flush=True)
                continue
            size, *flags = variant.split(":")
            cfg = config.replace(autocast_dtype="bfloat16") if "bf16" in flags else config
            mpes = next((f for f in flags if f.startswith("mpes")), None)  # mpes or mpesK: --early-stop most-probable
            if mpes:
                cfg = cfg.replace(early_stop="most-probable", most_probable_steps=int(mpes[4:] or 3))
            with unfrozen("unfrozen" in flags):
                run = timed_edit(model, tok, requests, cfg, moments, templates, False, Path(tmp), int(size))
            run.pop("diff")
            report["variants"][variant] = run
            print(f"{variant}: {run['seconds']:.1f} s, peak {run['peak_rss_bytes'] / 2**30:.2f} GiB, "
                  f"Score {run['metrics']['score']:.2f}", file=sys.stderr, flush=True)
    if "reference" in report["variants"]:
        reference = report["variants"]["reference"]
        for name, run in report["variants"].items():
            run["speedup_vs_reference"] = reference["seconds"] / run["seconds"]
            run["metrics_max_difference_vs_reference"] = max(abs(run["metrics"][k] - reference["metrics"][k])
                                                             for k in ("efficacy", "generalization", "locality"))
    print(json.dumps(report, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
