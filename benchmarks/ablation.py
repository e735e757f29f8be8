"""The paper's ablation on the default model: batched iterative editing (no restore between
batches) with MEMIT and PMET, each plain, +WD, +SP and +WD+SP; every batch is evaluated right
after its own edit (efficacy, generalisation, locality success and Score, CounterFact).

    .venv/bin/python benchmarks/ablation.py --batch 20 --iterations 10 --out docs/ablation
    ... --variant "+WD(dirac,pow10)=wd:true,wd_mode:dirac,wd_scale:pow10" --methods memit


Writes <out>/ablation.json (every figure, seconds per batch) and <out>/ablation.md (Score at
selected iterations and the average, in the paper's layout; average ES/PS/NS). Records are
taken in order from counterfact_rome.jsonl at --offset. Statistics: WikiText-2, --tokens tokens.
A configuration whose rows ablation.json already holds, with the same settings, is skipped
(resume by rerunning).
Each row also records the mean norm of the optimised deltas at the target point and, with SP,
the mean realised density.
"""

from __future__ import annotations

import argparse
import json
import statistics
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
from wdsp_cli.files.atomic import atomic_write_text  # noqa: E402
from wdsp_cli.model.loading import load_model  # noqa: E402
from wdsp_cli.model.weights import WeightState  # noqa: E402
from wdsp_cli.optimisation.prompts import generate_context_templates  # noqa: E402
from wdsp_cli.statistics.covariance import compute_covariance  # noqa: E402

VARIANTS = {"": {}, "+WD": {"wd": True}, "+SP": {"sp": True}, "+WD+SP": {"wd": True, "sp": True}}


def run_configuration(model, tok, config, moments, templates, batches) -> list[dict]:
    state = WeightState(model)
    snapshot = state.snapshot(edited_modules(model, config))
    rows = []
    try:
        for t, requests in enumerate(batches, start=1):
            clock = time.perf_counter()
            edit = edit_batch(model, tok, requests, config, moments, templates, state, iteration=t)
            seconds = time.perf_counter() - clock
            metrics = evaluate_counterfact(model, tok, requests)
            norms = list(edit.report["delta_norm"].values())[-1]
            sp = edit.report["sp"]
            rows.append({"iteration": t, "seconds": round(seconds, 2),
                         "delta_norm": round(sum(norms) / len(norms), 4),
                         "sp_density": round(sum(sp["density"]) / len(sp["density"]), 4) if sp else None,
                         **{k: round(v, 2) for k, v in metrics.items()}})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    finally:
        state.restore(snapshot)  # the next configuration starts from the base model
    return rows


def _canonical(results: dict) -> dict:
    """Methods in order, each plain, +WD, +SP, +WD+SP, then any other variant."""
    rank = {v: i for i, v in enumerate(VARIANTS)}
    def key(name):
        method, _, rest = name.partition("+")
        variant = "+" + rest if rest else ""
        return (method, rank.get(variant, len(rank)), name)
    return {name: results[name] for name in sorted(results, key=key)}


def markdown(results: dict, iterations: list[int]) -> str:
    results = _canonical(results)
    head = "| Method | " + " | ".join(f"@{i}" for i in iterations) + " | Avg |"
    lines = ["Score per iteration (harmonic mean of ES, PS, NS; each batch right after its edit)", "",
             head, "|" + "---|" * (len(iterations) + 2)]
    for name, rows in results.items():
        by_t = {r["iteration"]: r for r in rows}
        avg = sum(r["score"] for r in rows) / len(rows)
        lines.append(f"| {name} | " + " | ".join(f"{by_t[i]['score']:.2f}" if i in by_t else "-" for i in iterations)
                     + f" | {avg:.2f} |")
    lines += ["", "Averages over iterations", "", "| Method | Avg.Eff | Avg.Gen | Avg.Loc | median s/batch |", "|---|---|---|---|---|"]
    for name, rows in results.items():
        mean = lambda k: sum(r[k] for r in rows) / len(rows)  # noqa: E731
        lines.append(f"| {name} | {mean('efficacy'):.2f} | {mean('generalization'):.2f} | {mean('locality'):.2f} | "
                     f"{statistics.median(r['seconds'] for r in rows):.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--offset", type=int, default=0)
    ap.add_argument("--methods", default="memit,pmet")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="built-in variants ('' = plain)")
    ap.add_argument("--variant", action="append", default=[], help="NAME=field:value,... (repeatable)")
    ap.add_argument("--tokens", type=int, default=50_000)
    ap.add_argument("--steps", type=int, help="override v_num_grad_steps (quick trials)")
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "ablation")
    ap.add_argument("--report-only", action="store_true", help="rewrite ablation.md from ablation.json")
    args = ap.parse_args()
    if args.report_only:
        results = json.loads((args.out / "ablation.json").read_text())["results"]
        t = max(len(rows) for rows in results.values())
        marks = sorted({1, *range(2, t + 1, max(1, t // 5)), t})
        atomic_write_text(args.out / "ablation.md", markdown(results, marks))
        print(markdown(results, marks))
        return
    model, tok = load_model(args.model)
    records = load_requests(DATA / "counterfact" / "counterfact_rome.jsonl", offset=args.offset,
                            limit=args.batch * args.iterations)
    batches = [records[i : i + args.batch] for i in range(0, len(records), args.batch)]
    variants = {name: VARIANTS[name] for name in args.variants.split(",")}
    variants.update(parse_variant(spec) for spec in args.variant)
    configs = {}
    for method in args.methods.split(","):
        for variant, overrides in variants.items():
            config = preset(f"{method}-smollm2").replace(**overrides)
            configs[method.upper() + variant] = config.replace(v_num_grad_steps=args.steps) if args.steps else config
    layers = sorted({l for c in configs.values() for l in c.layers})
    stats = compute_covariance(model, tok, layers, open_corpus(DATA / "text" / "wikitext2_raw_test.txt"),
                               max_tokens=args.tokens)
    moments = {l: s.second_moment for l, s in stats.items()}
    templates = generate_context_templates(model, tok, 5, 10, seed=0)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "ablation.json"
    saved = json.loads(path.read_text()) if path.exists() else {}
    results = saved.get("results", {})
    for name, config in configs.items():
        if len(results.get(name, [])) == len(batches) and saved.get("configs", {}).get(name) == config.to_dict():
            continue
        results[name] = run_configuration(model, tok, config, moments, templates, batches)
        all_configs = {**saved.get("configs", {}), **{n: c.to_dict() for n, c in configs.items()}}
        document = {"args": {k: str(v) for k, v in vars(args).items()}, "configs": all_configs, "results": results}
        atomic_write_text(path, json.dumps(document, indent=1))
    marks = sorted({1, *range(2, len(batches) + 1, max(1, len(batches) // 5)), len(batches)})
    atomic_write_text(args.out / "ablation.md", markdown(results, marks))
    print(markdown(results, marks))


if __name__ == "__main__":
    main()
