"""The paper's protocol as a benchmark: T batches of B requests edited one after the other (no
restore), each batch evaluated right after its own edit, for methods x regularisers x seeds.

Public API:
    VARIANTS                      {"none": {}, "wd": {"wd": True}, "sp": {"sp": True}, "wd+sp": ...}
    BenchSpec(...)                what to run (frozen; saved with the results)
    run_bench(out, spec, progress=None) -> dict     every figure, also written to out/bench.json
    markdown_tables(results) -> str                 the paper's layout (Score at iterations, averages)
    plot_results(results, folder) -> [Path]         one PNG of curves per method

Layout of ``out``: base/ is a workspace holding the shared covariance statistics; runs/<name>/ is
one workspace per (method, variant, seed), its statistics hard-linked from base/. Every edit is a
committed iteration and every evaluation is stored, so rerunning an interrupted benchmark resumes
where it stopped and recomputes nothing; a grid grown by methods, variants or seeds reuses the
runs already done (the protocol fields must stay the same).
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..files.atomic import atomic_write_text
from ..workspace.store import Workspace

# What makes two runs comparable; methods, variants, seeds and retention points may grow.
PROTOCOL_FIELDS = ("requests", "batch_size", "iterations", "offset", "model", "corpus", "tokens", "steps")
VARIANTS: dict[str, dict] = {"none": {}, "wd": {"wd": True}, "sp": {"sp": True}, "wd+sp": {"wd": True, "sp": True}}
LABELS = {"none": "", "wd": "+WD", "sp": "+SP", "wd+sp": "+WD+SP"}
Progress = Callable[[str, dict], None]


@dataclass(frozen=True)
class BenchSpec:
    requests: str
    """Requests file (CounterFact, zsRE or facts JSONL); records offset .. offset + B*T - 1 are used."""
    batch_size: int = 20
    iterations: int = 10
    methods: tuple[str, ...] = ("memit", "pmet")
    variants: tuple[str, ...] = ("none", "wd", "sp", "wd+sp")
    seeds: tuple[int, ...] = (0,)
    retention_at: tuple[int, ...] = ()
    """Iterations at which every request edited so far is evaluated too (the last one is always added)."""
    offset: int = 0
    model: str = "smollm2-135m-instruct"
    corpus: str = "model-samples"
    tokens: int = 50_000
    steps: int | None = None
    """Override the optimisation steps (quick runs, CI); None keeps the method's."""

    def __post_init__(self) -> None:
        from ..config import METHODS

        problems = [f"unknown method {m!r}" for m in self.methods if m not in METHODS]
        problems += [f"unknown variant {v!r}" for v in self.variants if v not in VARIANTS]
        if self.batch_size < 1 or self.iterations < 1:
            problems.append("batch size and iterations must be at least 1")
        if any(not 1 <= t <= self.iterations for t in self.retention_at):
            problems.append(f"retention iterations {list(self.retention_at)} must be within 1..{self.iterations}")
        if not self.methods or not self.variants or not self.seeds:
            problems.append("give at least one method, variant and seed")
        if problems:
            raise InputError("invalid benchmark: " + "; ".join(problems),
                             hint=f"methods: {', '.join(METHODS)}; variants: {', '.join(VARIANTS)}")

    @property
    def retention_points(self) -> tuple[int, ...]:
        return tuple(sorted({*self.retention_at, self.iterations}))

    def run_names(self) -> list[tuple[str, str, str, int]]:
        return [(f"{m}-{v}-seed{s}", m, v, s) for m in self.methods for v in self.variants for s in self.seeds]


def _config(spec: BenchSpec, workspace: Workspace, method: str, variant: str, seed: int):
    from ..config import default_config_for

    m = workspace.model
    config = default_config_for(m["model_type"], m["num_layers"], method, m.get("hidden_size"))
    config = config.replace(**VARIANTS[variant], seed=seed)
    return config.replace(v_num_grad_steps=spec.steps) if spec.steps else config


def _open_base(out: Path, spec: BenchSpec, progress: Progress, device: str | None) -> Workspace:
    from ..jobs.statistics import compute_statistics
    from ..model.loading import load_model
    from ..workspace.checkout import describe_model

    root = out / "base"
    if Workspace.exists(root):
        base = Workspace.open(root)
        model = None
    else:
        model = load_model(spec.model, device=device or "cpu")
        base = Workspace.create(root, describe_model(spec.model, model[0], {"device": device or "cpu", "device_map": None}))
    layers = sorted({l for _, m, v, s in spec.run_names() for l in _config(spec, base, m, v, s).layers})
    with base.lock("wdsp bench"):
        progress("statistics", {"layers": layers, "tokens": spec.tokens})
        compute_statistics(base, layers, spec.corpus, spec.tokens, base=model, device=device)
    return base


def run_one(base: Workspace, run_root: Path, spec: BenchSpec, method: str, variant: str, seed: int,
            batches, progress: Progress, device: str | None = None) -> list[dict]:
    """Edit and evaluate one run to T iterations (resuming); returns one row per iteration.
    ``device``: where the model runs (None: where the base workspace was created)."""
    from ..jobs.edit import job_id, run_edit
    from ..jobs.evaluate import run_evaluate
    from ..workspace.checkout import checkout, load_base

    ws = Workspace.open(run_root) if Workspace.exists(run_root) else Workspace.create(run_root, base.model)
    config = _config(spec, ws, method, variant, seed)
    ws.adopt_statistics(base, config.layers)
    current = None
    with ws.lock("wdsp bench"):
        for t, batch in enumerate(batches, start=1):
            done = t in ws.iterations() and ws.record(t).get("job", {}).get("id") == job_id(batch, config, len(batch))
            if not done:
                if ws.head != t - 1:
                    ws.set_head(t - 1)  # later, different iterations are archived by the edit
                if current is None or current.iteration > t - 1:
                    current = checkout(ws, 0, base=load_base(ws, device=device))
                progress("edit", {"run": run_root.name, "iteration": t})
                run_edit(ws, batch, config, len(batch), current=current)
            elif ws.head < t:
                ws.set_head(t)
            document = ws.evaluation(t)
            retention = t in spec.retention_points
            if document is None or (retention and "all" not in document):
                if current is None or current.iteration > t:
                    current = checkout(ws, 0, base=load_base(ws, device=device))
                current.advance_to(ws, t)
                progress("evaluate", {"run": run_root.name, "iteration": t})
                run_evaluate(ws, t, retention=retention, current=current)
    rows = []
    for t in range(1, len(batches) + 1):
        document, record = ws.evaluation(t), ws.record(t)
        rows.append({"iteration": t, "seconds": record["summary"]["seconds"], "latest": document["latest"],
                     **({"all": document["all"]} if "all" in document else {})})
    return rows


def run_bench(out: str | os.PathLike, spec: BenchSpec, progress: Progress | None = None,
              device: str | None = None) -> dict:
    """Run (or resume) every run of ``spec`` in ``out``; ``device`` places the model (None: the CPU
    for a new benchmark, else where it was created). Returns every figure (also in out/bench.json)."""
    from ..data.requests import load_requests

    progress = progress or (lambda event, data: None)
    out = Path(out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "spec.json"
    protocol = {k: v for k, v in json.loads(json.dumps(dataclasses.asdict(spec))).items() if k in PROTOCOL_FIELDS}
    if saved.exists():
        before = {k: v for k, v in json.loads(saved.read_text()).items() if k in PROTOCOL_FIELDS}
        if before != protocol:
            changed = sorted(k for k in PROTOCOL_FIELDS if before.get(k) != protocol.get(k))
            raise InputError(f"{out} holds a benchmark with other settings ({', '.join(changed)})",
                             hint="use a new --out folder, or the same settings to resume (methods, variants, "
                                  "seeds and retention points may change: runs already done are reused)")
    requests = load_requests(spec.requests, offset=spec.offset, limit=spec.batch_size * spec.iterations)
    if len(requests) < spec.batch_size * spec.iterations:
        raise InputError(f"{spec.requests} has only {len(requests)} records from offset {spec.offset}, "
                         f"{spec.batch_size * spec.iterations} needed", hint="lower --batch-size or --iterations")
    atomic_write_text(saved, json.dumps(dataclasses.asdict(spec), indent=2, sort_keys=True))
    batches = [requests[i : i + spec.batch_size] for i in range(0, len(requests), spec.batch_size)]
    base = _open_base(out, spec, progress, device)
    results = {"spec": dataclasses.asdict(spec), "model": base.model, "runs": {}}
    for name, method, variant, seed in spec.run_names():
        progress("run", {"run": name})
        rows = run_one(base, out / "runs" / name, spec, method, variant, seed, batches, progress, device)
        results["runs"][name] = {"method": method, "variant": variant, "seed": seed, "iterations": rows}
        atomic_write_text(out / "bench.json", json.dumps(results, indent=1, sort_keys=True, allow_nan=True))
    atomic_write_text(out / "bench.md", markdown_tables(results))
    results["plots"] = [str(p) for p in plot_results(results, out / "plots")]
    atomic_write_text(out / "bench.json", json.dumps(results, indent=1, sort_keys=True, allow_nan=True))
    return results


# ---- summaries ----------------------------------------------------------------------------------

def _mean(values) -> float:
    values = [v for v in values if v is not None and v == v]
    return sum(values) / len(values) if values else float("nan")


def seed_averaged(results: dict) -> dict[str, list[dict]]:
    """{"MEMIT+WD": [per-iteration metrics averaged over seeds]} in the grid's order."""
    grouped: dict[str, list[list[dict]]] = {}
    for run in results["runs"].values():
        label = run["method"].upper() + LABELS[run["variant"]]
        grouped.setdefault(label, []).append(run["iterations"])
    averaged = {}
    for label, runs in grouped.items():
        rows = []
        for t in range(len(runs[0])):
            row = {"iteration": t + 1, "seconds": _mean(r[t]["seconds"] for r in runs)}
            for scope in ("latest", "all"):
                if all(scope in r[t] for r in runs):
                    row[scope] = {k: _mean(r[t][scope].get(k) for r in runs)
                                  for k in ("efficacy", "generalization", "locality", "locality_base", "score")}
            rows.append(row)
        averaged[label] = rows
    return averaged


def _marks(iterations: int) -> list[int]:
    """Iterations shown in the Score table: all up to 10, else 1, every T // 5 and T."""
    if iterations <= 10:
        return list(range(1, iterations + 1))
    step = max(1, iterations // 5)
    return sorted({1, *range(step, iterations + 1, step), iterations})


def markdown_tables(results: dict) -> str:
    spec = results["spec"]
    averaged = seed_averaged(results)
    marks = _marks(spec["iterations"])
    protocol = next(iter(results["runs"].values()))["iterations"][0]["latest"].get("protocol", "")
    lines = [f"Requests: {spec['requests']} (offset {spec['offset']}), B = {spec['batch_size']}, "
             f"T = {spec['iterations']}, seeds {spec['seeds']}, model {spec['model']}, {protocol} metrics (%).", "",
             "Score of each batch right after its edit, at selected iterations, and its average", "",
             "| Method | " + " | ".join(f"@{t}" for t in marks) + " | Avg |", "|---" * (len(marks) + 2) + "|"]
    for label, rows in averaged.items():
        lines.append(f"| {label} | " + " | ".join(f"{rows[t - 1]['latest']['score']:.2f}" for t in marks)
                     + f" | {_mean(r['latest']['score'] for r in rows):.2f} |")
    lines += ["", "Averages over iterations (each batch right after its edit)", "",
              "| Method | Avg.Eff | Avg.Gen | Avg.Loc | Avg.Loc vs base | median s/batch |", "|---|---|---|---|---|---|"]
    for label, rows in averaged.items():
        mean = lambda k: _mean(r["latest"][k] for r in rows)  # noqa: E731
        lines.append(f"| {label} | {mean('efficacy'):.2f} | {mean('generalization'):.2f} | {mean('locality'):.2f} | "
                     f"{mean('locality_base'):.2f} | {statistics.median(r['seconds'] for r in rows):.1f} |")
    points = [t for t in range(1, spec["iterations"] + 1) if all("all" in rows[t - 1] for rows in averaged.values())]
    if points:
        lines += ["", "Retention: every request edited so far, evaluated at iteration t (Eff / Gen / Loc / Score)", "",
                  "| Method | " + " | ".join(f"@{t}" for t in points) + " |", "|---" * (len(points) + 1) + "|"]
        for label, rows in averaged.items():
            cells = [rows[t - 1]["all"] for t in points]
            lines.append(f"| {label} | " + " | ".join(
                f"{c['efficacy']:.1f} / {c['generalization']:.1f} / {c['locality']:.1f} / **{c['score']:.1f}**"
                for c in cells) + " |")
    return "\n".join(lines) + "\n"


def plot_results(results: dict, folder: str | os.PathLike) -> list[Path]:
    """out/plots/<method>.png: efficacy, generalisation, locality and Score of each batch right
    after its edit against the iteration, one line per variant (seed-averaged)."""
    from .plots import plot_curves

    averaged = seed_averaged(results)
    paths = []
    for method in results["spec"]["methods"]:
        series = {label: [(r["iteration"], r["latest"]) for r in rows]
                  for label, rows in averaged.items() if label.split("+")[0] == method.upper()}
        paths.append(plot_curves(series, Path(folder) / f"{method}.png",
                                 title=f"{method.upper()}: B = {results['spec']['batch_size']}"))
    return paths
