"""Speed and memory of the editing engine on the default model, each comparison in one run (issue 6).

    .venv/bin/python benchmarks/perf.py --json > benchmarks/results/perf-<machine>-<date>.json
    .venv/bin/python benchmarks/perf.py --reduced --json     # CI: small B, checks agreement only

Prints one JSON document:
  edit_batch_s, edit_batch_reference_s, edit_speedup   one MEMIT iteration of the first --batch
      requests of counterfact_easyedit.part1.jsonl: the batched engine vs the per-request reference
      loop (``optimise_each_request`` + ``write_targets``), same hyper-parameters (memit-smollm2), from the same
      weights; each with its breakdown (optimise, keys, solve, apply, write) and its ES/PS/NS/Score;
      metrics_max_difference: the largest difference of the two runs' metrics, in points;
  edit_peak_rss_bytes          the process's peak RSS during the batched edit (model, statistics and
      everything the edit allocated; Linux's VmHWM, reset just before the edit), with the default
      requests per pass (20); edit_unchunked_peak_rss_bytes and edit_unchunked_s: the same edit with
      all requests in one forward/backward (``requests_per_pass=0``); edit_bf16_*: the default edit
      under ``--autocast bfloat16`` (not in --reduced), its speedup, metrics and peak;
  covariance_tokens_per_s, forward_tokens_per_s   statistics for the edited layers vs a plain no-grad
      forward truncated after the last edited layer, on the same batches, timed batch by batch;
  diff_bytes_per_iteration, dense_bytes_per_iteration, diff_to_dense_ratio;
  rollback_0_s, rollback_100_s, rollback_load_s   materialising iteration 0 and 100 of a workspace of
      100 iterations (diffs of the real shapes: factors of the measured edit, repeated), the model
      load included, and the load alone;
  evaluate_requests_per_s      CounterFact evaluation of the batch (rewrite, paraphrase, neighbours);
  edit_mpes_*                  the edit with ``--early-stop most-probable`` (not in --reduced);
  edit_bf16_mpes_*             the edit with both ``--autocast bfloat16`` and MPES (not in --reduced);
  bench_edits_per_hour         ``wdsp bench`` over 2 iterations of B (edits and evaluations with health);
      bench_fast_*: the variant mpes+bf16 in the same bench (not in --reduced);
  main_job_s                   ``examples/quickstart.sh`` on a fresh workspace (with --main-job);
  targets                      issue 15's targets with the figures reached and whether they are met.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from covariance_throughput import PairedTimer  # noqa: E402
from machine import cpu_description  # noqa: E402

from wdsp_cli.config import preset  # noqa: E402
from wdsp_cli.data.corpus import open_corpus  # noqa: E402
from wdsp_cli.data.requests import load_requests  # noqa: E402
from wdsp_cli.editing.batch import edit_batch, edited_modules, write_targets  # noqa: E402
from wdsp_cli.evaluation.scoring import evaluate_counterfact  # noqa: E402
from wdsp_cli.methods import method  # noqa: E402
from wdsp_cli.model.architectures import template_for  # noqa: E402
from wdsp_cli.model.loading import load_model  # noqa: E402
from wdsp_cli.model.weights import WeightState  # noqa: E402
from wdsp_cli.optimisation.prompts import generate_context_templates  # noqa: E402
from wdsp_cli.optimisation.reference import optimise_each_request  # noqa: E402
from wdsp_cli.optimisation.targets import (  # noqa: E402
    DEFAULT_REQUESTS_PER_PASS,
    OptimisationSettings,
)
from wdsp_cli.statistics.covariance import (  # noqa: E402
    compute_covariance,
    length_sorted_batches,
    token_rows,
)

METRICS = ("efficacy", "generalization", "locality", "score")


def reset_peak_rss() -> bool:
    """Reset the process's peak RSS (Linux >= 4.0: "5" > /proc/self/clear_refs); False if unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """Peak RSS since the last reset (VmHWM), else since the process started (ru_maxrss)."""
    try:
        return int(re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024
    except (OSError, AttributeError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def edit_inputs(model, tok, config, tokens: int) -> tuple[dict, list[str]]:
    """What the benchmarks' edits share: second moments {layer: C [d, d]} from ``tokens`` tokens of
    WikiText-2 test, and the context templates sampled from the base model with the config's seed."""
    stats = compute_covariance(model, tok, config.layers, open_corpus(DATA / "text" / "wikitext2_raw_test.txt"),
                               max_tokens=tokens)
    templates = generate_context_templates(model, tok, config.context_template_count,
                                           config.context_template_length, config.seed)
    return {l: s.second_moment for l, s in stats.items()}, templates


def timed_edit(model, tok, requests, config, moments, templates, per_request: bool, folder: Path,
               requests_per_pass: int | None = None) -> dict:
    state = WeightState(model)
    snapshot = state.snapshot(edited_modules(model, config))
    reset = reset_peak_rss()
    clock = time.perf_counter()
    if per_request:  # the straightforward loop, then the same write of the targets
        points = method(config.method).points(template_for(model), config.z_layer)
        oracle = optimise_each_request(model, tok, requests, templates, points,
                                       OptimisationSettings.from_config(config), config.kl_prompt)
        optimised = time.perf_counter()
        edit = write_targets(model, tok, requests, config, oracle, moments, templates, state)
        edit.report["timings_s"] = {"optimise": optimised - clock, **edit.report["timings_s"]}
    else:
        edit = edit_batch(model, tok, requests, config, moments, templates, state,
                          requests_per_pass=requests_per_pass)
    write = time.perf_counter()
    edit.diff.save(folder / f"diff-{'reference' if per_request else 'batched'}.safetensors")
    done = time.perf_counter()
    rss = peak_rss_bytes()
    metrics = evaluate_counterfact(model, tok, requests)
    evaluated = time.perf_counter()
    state.restore(snapshot)
    return {"seconds": done - clock, "breakdown_s": {**edit.report["timings_s"], "write": done - write},
            "metrics": {k: metrics[k] for k in METRICS}, "peak_rss_bytes": rss, "peak_rss_reset": reset,
            "diff": edit.diff, "evaluate_s": evaluated - done,
            "mean_updates": float(edit.residuals.updates.float().mean())}


def covariance_throughput(model, tok, layers, tokens: int) -> dict:
    corpus = open_corpus(DATA / "text" / "wikitext2_raw_test.txt")
    rows = list(token_rows(tok, corpus.texts(), seq_len=256, max_tokens=tokens))
    batches = list(length_sorted_batches(rows, 8, tok.pad_token_id, max_slots=8 * 256))
    timer = PairedTimer(model, batches, max(layers))
    timer.start()
    compute_covariance(model, tok, layers, corpus, max_tokens=tokens, progress=timer)
    timer.cov_s += time.perf_counter() - timer.mark
    n = sum(map(len, rows))
    return {"covariance_tokens_per_s": n / timer.cov_s, "forward_tokens_per_s": n / timer.plain_s,
            "covariance_to_forward_ratio": timer.plain_s / timer.cov_s, "tokens": n}


def rollback_timings(model_source: str, diff, iterations: int, folder: Path) -> dict:
    """A workspace of ``iterations`` iterations, each the measured diff; time checkouts."""
    from wdsp_cli.workspace.checkout import checkout, describe_model, load_base
    from wdsp_cli.workspace.store import Workspace

    model, _ = load_model(model_source)
    ws = Workspace.create(folder / "workspace", describe_model(model_source, model))
    del model
    for t in range(1, iterations + 1):
        ws.commit_iteration(t, diff, [], {"job": {"id": "perf", "batch": t - 1}})
    clock = time.perf_counter()
    load_base(ws)
    load_s = time.perf_counter() - clock
    out = {"rollback_load_s": load_s}
    for t in (0, iterations):
        clock = time.perf_counter()
        checkout(ws, t)
        out[f"rollback_{t}_s"] = time.perf_counter() - clock
    return out


def bench_throughput(batch: int, iterations: int, out: Path, steps: int | None, tokens: int,
                     fast: bool = False) -> dict:
    """``wdsp bench`` (MEMIT, B = ``batch``, T = ``iterations``, statistics from the built-in corpus):
    edits per hour over its edits and evaluations (health included), model loading and statistics not.
    With ``fast``, also the variant mpes+bf16 in the same bench (``bench_fast_*``)."""
    from wdsp_cli.bench.protocol import BenchSpec, run_bench

    variants = ("none", "mpes+bf16") if fast else ("none",)
    spec = BenchSpec(str(DATA / "counterfact" / "counterfact_easyedit.part1.jsonl"), batch_size=batch,
                     iterations=iterations, methods=("memit",), variants=variants, corpus="builtin", tokens=tokens,
                     steps=steps, offset=1000)
    runs = run_bench(out, spec)["runs"]
    out = {"bench_batch": batch, "bench_iterations": iterations}
    for prefix, name in (("bench", "memit-none-seed0"), ("bench_fast", "memit-mpes+bf16-seed0")):
        if name in runs:
            rows = runs[name]["iterations"]
            seconds = sum(r["seconds"] + r["evaluation_seconds"] for r in rows)
            out.update({f"{prefix}_seconds_per_iteration": seconds / len(rows),
                        f"{prefix}_edits_per_hour": 3600 * batch * len(rows) / seconds,
                        f"{prefix}_scores": [round(r["latest"]["score"], 2) for r in rows]})
    return out


def main_job_seconds() -> dict:
    """``bash examples/quickstart.sh`` on a fresh workspace (after setup), timed."""
    import os
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        clock = time.perf_counter()
        subprocess.run(["bash", str(ROOT / "examples" / "quickstart.sh")], check=True, capture_output=True,
                       env={**os.environ, "WS": str(Path(tmp) / "ws")})
        return {"main_job_s": time.perf_counter() - clock}


def targets(report: dict) -> dict:
    """Issue 15's targets next to what this run reached (each on the machine in ``report["machine"]``;
    the issue sets the throughput target for the Intel AMX class and the main job's for AVX2-only)."""
    reached = {"edit_speedup_vs_reference": (12.0, report.get("edit_speedup"), ">="),
               "edit_mpes_speedup_vs_reference": (12.0, report.get("edit_mpes_speedup"), ">="),
               "edit_bf16_mpes_speedup_vs_reference": (12.0, report.get("edit_bf16_mpes_speedup"), ">="),
               "bench_edits_per_hour": (2000.0, report.get("bench_edits_per_hour"), ">="),
               "bench_fast_edits_per_hour": (2000.0, report.get("bench_fast_edits_per_hour"), ">="),
               "main_job_s": (180.0, report.get("main_job_s"), "<=")}
    return {name: {"target": target, "reached": value,
                   "met": None if value is None else (value >= target if sense == ">=" else value <= target)}
            for name, (target, value, sense) in reached.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--tokens", type=int, default=20_000, help="covariance statistics tokens")
    ap.add_argument("--rollback-iterations", type=int, default=100)
    ap.add_argument("--requests-per-pass", type=int, default=None, help="the batched edit's chunk (default 20)")
    ap.add_argument("--reduced", action="store_true",
                    help="CI: B=4 in chunks of 2, 5 steps, 2k tokens, 5 iterations")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--json", action="store_true", help="print the JSON document (always written to stdout)")
    ap.add_argument("--main-job", action="store_true", help="also time examples/quickstart.sh on a fresh workspace")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    config = preset("memit-smollm2")
    if args.reduced:
        args.batch, args.tokens, args.rollback_iterations, args.requests_per_pass = 4, 2000, 5, 2
        config = config.replace(v_num_grad_steps=5)
    model, tok = load_model("smollm2-135m-instruct")
    requests = load_requests(DATA / "counterfact" / "counterfact_easyedit.part1.jsonl", limit=args.batch)
    report: dict = {"batch": args.batch, "config": config.to_dict(), "threads": torch.get_num_threads(),
                    "requests_per_pass": args.requests_per_pass or DEFAULT_REQUESTS_PER_PASS,
                    "machine": cpu_description()}
    report.update(covariance_throughput(model, tok, list(config.layers), args.tokens))
    moments, templates = edit_inputs(model, tok, config, args.tokens)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        batched = timed_edit(model, tok, requests, config, moments, templates, False, folder, args.requests_per_pass)
        unchunked = timed_edit(model, tok, requests, config, moments, templates, False, folder, requests_per_pass=0)
        bf16 = None if args.reduced else timed_edit(model, tok, requests, config.replace(autocast_dtype="bfloat16"),
                                                    moments, templates, False, folder, args.requests_per_pass)
        reference = timed_edit(model, tok, requests, config, moments, templates, True, folder)
        report.update({
            "peak_rss_reset": batched["peak_rss_reset"],
            "edit_batch_s": batched["seconds"], "edit_batch_breakdown_s": batched["breakdown_s"],
            "edit_batch_metrics": batched["metrics"],
            "edit_batch_reference_s": reference["seconds"], "edit_batch_reference_breakdown_s": reference["breakdown_s"],
            "edit_batch_reference_metrics": reference["metrics"],
            "edit_speedup": reference["seconds"] / batched["seconds"],
            "metrics_max_difference": max(abs(batched["metrics"][k] - reference["metrics"][k]) for k in METRICS),
            "metrics_max_difference_unchunked": max(abs(batched["metrics"][k] - unchunked["metrics"][k])
                                                    for k in METRICS),
            "edit_peak_rss_bytes": batched["peak_rss_bytes"],
            "edit_unchunked_peak_rss_bytes": unchunked["peak_rss_bytes"], "edit_unchunked_s": unchunked["seconds"],
            "edit_unchunked_metrics": unchunked["metrics"],
            "evaluate_requests_per_s": args.batch / batched["evaluate_s"],
            "diff_bytes_per_iteration": (folder / "diff-batched.safetensors").stat().st_size,
            "dense_bytes_per_iteration": batched["diff"].dense_nbytes,
        })
        if bf16 is not None:
            report.update({
                "edit_bf16_s": bf16["seconds"], "edit_bf16_speedup": reference["seconds"] / bf16["seconds"],
                "edit_bf16_metrics": bf16["metrics"], "edit_bf16_peak_rss_bytes": bf16["peak_rss_bytes"],
                "metrics_max_difference_bf16": max(abs(bf16["metrics"][k] - reference["metrics"][k]) for k in METRICS),
            })
        report["diff_to_dense_ratio"] = report["diff_bytes_per_iteration"] / report["dense_bytes_per_iteration"]
        if not args.reduced:
            mpes = timed_edit(model, tok, requests, config.replace(early_stop="most-probable"), moments, templates,
                              False, folder, args.requests_per_pass)
            report.update({
                "edit_mpes_s": mpes["seconds"], "edit_mpes_speedup": reference["seconds"] / mpes["seconds"],
                "edit_mpes_metrics": mpes["metrics"], "edit_mpes_mean_updates": mpes["mean_updates"],
                "edit_batch_mean_updates": batched["mean_updates"],
                "metrics_max_difference_mpes": max(abs(mpes["metrics"][k] - reference["metrics"][k]) for k in METRICS),
            })
            fast = config.replace(early_stop="most-probable", autocast_dtype="bfloat16")
            both = timed_edit(model, tok, requests, fast, moments, templates, False, folder, args.requests_per_pass)
            report.update({
                "edit_bf16_mpes_s": both["seconds"], "edit_bf16_mpes_speedup": reference["seconds"] / both["seconds"],
                "edit_bf16_mpes_metrics": both["metrics"], "edit_bf16_mpes_mean_updates": both["mean_updates"],
                "metrics_max_difference_bf16_mpes": max(abs(both["metrics"][k] - reference["metrics"][k])
                                                        for k in METRICS),
            })
        report.update(rollback_timings("smollm2-135m-instruct", batched["diff"], args.rollback_iterations, folder))
        report.update(bench_throughput(args.batch, 2, folder / "bench", 5 if args.reduced else None, args.tokens,
                                       fast=not args.reduced))
    if args.main_job:
        report.update(main_job_seconds())
    report["targets"] = targets(report)
    print(json.dumps(report, indent=2, sort_keys=True))
    for key, other in (("metrics_max_difference", "the per-request reference"),
                       ("metrics_max_difference_unchunked", "the unchunked edit")):
        if args.reduced and report[key] > 1.0 + 1e-9:
            sys.exit(f"the batched edit and {other} disagree by {report[key]:.2f} points (more than 1)")


if __name__ == "__main__":
    main()
