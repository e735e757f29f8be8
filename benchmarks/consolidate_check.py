"""Would one joint solve from the base weights hold what a long sequence of edits holds, at less damage?
(issue 17: a candidate setting, periodic consolidation; nothing here writes to the workspace.)

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/consolidate_check.py WORKSPACE [--iteration T] [--sample 500]

Sequential MEMIT solves each batch for its own keys only (Delta_t = R_t K_t^T (lambda C + K_t K_t^T)^-1),
so batch t moves the values of every earlier batch's keys and later batches build on that. The joint
solve writes all N facts in force at iteration T at once, from W_0:

    Z = the z-layer value of each fact's subject on the model at T   [N, d]  (what T holds now)
    then MEMIT's write of Z for all N requests on W_0 (keys, spread over the layers, one solve per layer),

so the consolidated model aims at T's values for all N keys together, with MEMIT's least change on
the statistics' keys. A write reaches only part of its aim (the solve is regularised by lambda C), so
``--rounds K`` writes K times from W_0, each aiming at Z plus what the previous round missed. Printed (one JSON document on stdout): for the model at T and for the
consolidated one, held-out perplexity over the base's (the workspace's health sample), the edited
matrices' largest relative Frobenius drift and spectral ratio, and retention (Eff / Gen / Loc /
Score) on the workspace's fixed sample of ``--sample`` requests of those in force; for the joint
model, ``value_gap`` = mean ||Z_joint - Z|| / mean ||Z - V_0|| (0: it holds T's values exactly).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_description  # noqa: E402

from wdsp_cli import ENGINE_VERSION  # noqa: E402
from wdsp_cli.config import EditConfig  # noqa: E402
from wdsp_cli.editing.batch import edited_modules, write_targets  # noqa: E402
from wdsp_cli.editing.keys import compute_keys  # noqa: E402
from wdsp_cli.jobs.evaluate import health_sample, in_force, measure, retention_sample  # noqa: E402
from wdsp_cli.jobs.statistics import load_second_moments  # noqa: E402
from wdsp_cli.methods import method  # noqa: E402
from wdsp_cli.model.architectures import template_for  # noqa: E402
from wdsp_cli.optimisation.targets import ResidualResult  # noqa: E402
from wdsp_cli.workspace.checkout import checkout, context_templates  # noqa: E402
from wdsp_cli.workspace.store import Workspace  # noqa: E402


def joint_residuals(current, requests, config: EditConfig, templates) -> tuple[str, torch.Tensor]:
    """(the method's target point, Z [N, d]): the z-layer value of each request on ``current``'s model."""
    point = method(config.method).target(template_for(current.model), config.z_layer)
    module = edited_modules(current.model, config)[-1]
    return point, compute_keys(current.model, current.tokenizer, requests, templates, module, point)[1]


def figures(current, sample, health) -> dict:
    found = measure(current, sample, health=health)  # the sample as one set: its metrics are "latest"
    keep = ("requests", "efficacy", "generalization", "locality", "score")
    h = found["health"]
    return {"retention": {k: found["latest"][k] for k in keep}, "perplexity_ratio": h["perplexity_ratio"],
            "locality_prompts": h["locality_prompts"], "max_relative_frobenius": h["max_relative_frobenius"],
            "max_spectral_ratio": h["max_spectral_ratio"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("workspace", type=Path)
    ap.add_argument("--iteration", type=int, help="default HEAD")
    ap.add_argument("--sample", type=int, default=500, help="retention sample (the bench's default 500)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="joint writes, each from the base weights, aiming past T's values by what the last missed")
    args = ap.parse_args()
    workspace = Workspace.open(args.workspace)
    if workspace.health_sample() is None:
        sys.exit("consolidate_check: the workspace has no health sample yet; run `wdsp evaluate` on it once")
    t = args.iteration or workspace.head
    config = EditConfig.from_dict(workspace.record(t)["config"])
    if config.method != "memit":
        sys.exit(f"consolidate_check: iteration {t} was edited with {config.method}; only memit is written here")
    joint_config = config.replace(sp=False, norm_anchor=False, norm_budget=None)
    edited = in_force([workspace.requests(s) for s in range(1, t + 1)])
    requests = [r for batch in edited for r in batch]
    sample = retention_sample(edited, args.sample)
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    clock = time.perf_counter()
    at_t = checkout(workspace, t)
    health = health_sample(workspace, at_t)
    templates, _ = context_templates(workspace, at_t.model, at_t.tokenizer, config)
    log(f"iteration {t}: {len(requests)} requests in force; measuring the model at {t}")
    report = {"workspace": str(args.workspace), "iteration": t, "requests": len(requests), "engine": ENGINE_VERSION,
              "threads": torch.get_num_threads(), "machine": cpu_description(), "sample": len(sample)}
    report["at_t"] = figures(at_t, sample, health)
    point, targets = joint_residuals(at_t, requests, config, templates)
    del at_t
    base = checkout(workspace, 0)
    moments = load_second_moments(workspace, config.layers)
    log(f"joint write of {len(requests)} requests from the base weights")
    modules = edited_modules(base.model, config)
    values = compute_keys(base.model, base.tokenizer, requests, templates, modules[-1], point)[1]
    zeros = torch.zeros(len(requests))
    snapshot = base.state.snapshot(modules)
    aim, solve = targets, time.perf_counter()
    for round_ in range(1, args.rounds + 1):  # each round aims past T's values by what the last one missed
        if round_ > 1:
            base.state.restore(snapshot)
        residuals = ResidualResult((point,), {point: values}, {point: aim - values}, zeros, zeros, zeros)
        edit = write_targets(base.model, base.tokenizer, requests, joint_config, residuals, moments, templates,
                             base.state)
        reached = compute_keys(base.model, base.tokenizer, requests, templates, modules[-1], point)[1]
        # how far the joint model's values are from T's, relative to how far T's are from the base's
        gap = float((reached - targets).norm(dim=1).mean() / (targets - values).norm(dim=1).mean())
        log(f"round {round_}: value gap {gap:.3f}")
        aim = aim + (targets - reached)
    report["joint_write_seconds"] = round(time.perf_counter() - solve, 1)
    report["rounds"] = args.rounds
    report["joint"] = figures(base, sample, health)
    report["joint"]["update_norms"] = [r["update_norm"] for r in edit.report["layers"]]
    report["joint"]["value_gap"] = gap
    report["seconds"] = round(time.perf_counter() - clock, 1)
    print(json.dumps(report, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
