"""Speed of ``optimise_residuals`` on the default model: whole rows vs the prefix cache vs bf16.

Runs MEMIT's target-value optimisation (z-layer 8, block output) for 20 CounterFact requests with
the 6 context templates of ``generate_context_templates(model, tok, 5, 10, seed=0)`` and the
GPT-J settings (v_lr 0.5, 25 steps, clamp 0.75, kl 0.0625, weight decay 0.5), in one process
with ``torch.set_num_threads(--threads)`` (default 1: with other processes on a 2-core machine,
2 OpenMP threads are several times slower), three ways:

  * ``uncached_fp32``: whole rows every step (``prefix_cache=False``), float32;
  * ``cached_fp32``:   the prefix key/value cache (the default), float32;
  * ``cached_bf16``:   the prefix cache under ``torch.autocast(bfloat16)``.

``--old-baseline`` adds ``uncached_fp32_one_group``: whole rows in one padded batch and the default
SDPA backend, i.e. the algorithm before the prefix cache and length grouping.

Each variant runs ``--repeats`` times, interleaved, and the fastest is kept. Prints one JSON line:
seconds, mean Adam updates per request and, for each variant, the largest relative difference
||delta_i - delta_i(uncached fp32)|| / ||delta_i(uncached fp32)|| over the requests.

    .venv/bin/python benchmarks/optimise_speed.py
"""

from __future__ import annotations

import argparse
import contextlib
import json
import pathlib
import sys
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wdsp_cli.data.requests import load_requests  # noqa: E402
from wdsp_cli.model.architectures import template_for  # noqa: E402
from wdsp_cli.model.loading import load_model  # noqa: E402
from wdsp_cli.optimisation import prompts as grouping  # noqa: E402
from wdsp_cli.optimisation import targets as residuals  # noqa: E402
from wdsp_cli.optimisation.prompts import generate_context_templates  # noqa: E402
from wdsp_cli.optimisation.targets import (  # noqa: E402
    OptimisationSettings,
    build_edit_prompts,
    optimise_residuals,
)

VARIANTS = {
    "uncached_fp32": dict(prefix_cache=False),
    "cached_fp32": dict(prefix_cache=True),
    "cached_bf16": dict(prefix_cache=True, autocast_dtype=torch.bfloat16),
}


@contextlib.contextmanager
def old_algorithm(on: bool):
    """With ``on``: all rows in one decoder call and the default SDPA backend."""
    cost, precision = grouping.GROUP_CALL_COST, residuals._precision
    if on:
        grouping.GROUP_CALL_COST = 10**9
        residuals._precision = lambda device, dtype: contextlib.nullcontext()
    try:
        yield
    finally:
        grouping.GROUP_CALL_COST, residuals._precision = cost, precision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="/tmp/smollm2")
    parser.add_argument("--data", default=str(ROOT.parent / "shared/data/counterfact/counterfact_rome.jsonl"))
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--layer", type=int, default=8)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--old-baseline", action="store_true")
    args = parser.parse_args()
    variants = dict(VARIANTS)
    if args.old_baseline:
        variants["uncached_fp32_one_group"] = dict(prefix_cache=False)

    torch.set_num_threads(args.threads)
    source = args.model if (pathlib.Path(args.model) / "config.json").is_file() else "smollm2-135m-instruct"
    model, tok = load_model(source)
    requests = load_requests(args.data, limit=args.requests)
    templates = generate_context_templates(model, tok, 5, 10, seed=0)
    prompts = build_edit_prompts(tok, requests, templates)
    points = [template_for(model).block_name(args.layer)]
    base = dict(v_lr=0.5, v_num_grad_steps=args.steps, clamp_norm_factor=0.75, kl_factor=0.0625,
                v_weight_decay=0.5)
    rows, lookup = prompts.rows.lengths, prompts.lookup
    # warm-up (oneDNN primitives, allocator)
    for name, kw in variants.items():
        with old_algorithm(name.endswith("one_group")):
            optimise_residuals(model, prompts, points, OptimisationSettings(**{**base, **kw, "v_num_grad_steps": 2}))

    seconds = {name: float("inf") for name in variants}
    results = {}
    for _ in range(args.repeats):
        for name, kw in variants.items():
            with old_algorithm(name.endswith("one_group")):
                start = time.perf_counter()
                results[name] = optimise_residuals(model, prompts, points, OptimisationSettings(**base, **kw))
                seconds[name] = min(seconds[name], time.perf_counter() - start)

    ref = results["uncached_fp32"].delta[points[0]]
    out = {
        "model": source, "requests": len(requests), "rows": int(rows.numel()), "threads": torch.get_num_threads(),
        "tokens_per_step_whole_rows": int(rows.sum()), "tokens_per_step_cached": int((rows - lookup).sum()),
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "speedup_vs_uncached_fp32": {k: round(seconds["uncached_fp32"] / v, 2) for k, v in seconds.items()},
        "mean_updates": {k: float(r.updates.float().mean()) for k, r in results.items()},
        "max_rel_delta_diff_vs_uncached_fp32": {
            k: float(((r.delta[points[0]] - ref).norm(dim=1) / ref.norm(dim=1)).max()) for k, r in results.items()},
        "mean_final_nll": {k: float(r.nll.mean()) for k, r in results.items()},
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
