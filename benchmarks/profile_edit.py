"""Where a MEMIT edit's target optimisation spends its time: torch.profiler over one
``optimise_targets`` of --batch CounterFact requests on the default model, top operators by self
CPU time, plus the CPU.

    .venv/bin/python benchmarks/profile_edit.py [--batch 20] [--steps 25] [--top 25]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "benchmarks"))
from machine import cpu_description  # noqa: E402

from wdsp_cli.config import preset  # noqa: E402
from wdsp_cli.data.requests import load_requests  # noqa: E402
from wdsp_cli.editing.batch import optimise_targets  # noqa: E402
from wdsp_cli.model.loading import load_model  # noqa: E402
from wdsp_cli.optimisation.prompts import generate_context_templates  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    model, tok = load_model("smollm2-135m-instruct")
    config = preset("memit-smollm2").replace(v_num_grad_steps=args.steps)
    requests = load_requests(DATA / "counterfact" / "counterfact_easyedit.part1.jsonl", limit=args.batch)
    templates = generate_context_templates(model, tok, config.context_template_count,
                                           config.context_template_length, config.seed)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        result = optimise_targets(model, tok, requests, config, templates)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    top = [{"op": e.key, "self_s": round(e.self_cpu_time_total / 1e6, 2), "share": round(e.self_cpu_time_total / total, 3),
            "calls": e.count} for e in events[: args.top]]
    print(json.dumps({"batch": args.batch, "steps": args.steps, "threads": torch.get_num_threads(),
                      "machine": cpu_description(), "total_self_s": round(total / 1e6, 1),
                      "mean_updates": float(result.updates.float().mean()), "top": top}, indent=1))


if __name__ == "__main__":
    main()
