"""The paper's protocol as a benchmark: T batches of B requests edited one after the other (no
restore), each batch evaluated right after its own edit, for methods x regularisers x seeds.

Public API:
    BenchSpec(...)                what to run (frozen; saved with the results)
    run_bench(out, spec, progress=None, device=None, jobs=1) -> dict    run or resume; = summarize(out)
    summarize(out) -> dict        bench.json, bench.md, plots/ from the runs as far as they have got
    collapsed(evaluation) -> bool the rule that stops a run (COLLAPSE_EFFICACY, COLLAPSE_PERPLEXITY_RATIO)
A run's variant names its extra settings (``bench.variants``); the tables and plots come from
``bench.tables``.

The evaluation budget: every batch is evaluated right after its edit (with the health figures);
retention (the requests edited so far, or a fixed random sample of ``retention_sample`` of them)
at ``retention_at``, every ``retention_every`` iterations and at the end. A run stops early once
``collapse_batches`` batches in a row have collapsed: efficacy under 5%, or held-out perplexity
over 10x the base model's (at that point the model no longer takes edits, and what it says is
broken); the table marks where.

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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..files.atomic import atomic_write_text
from ..workspace.store import Workspace
from .tables import HEALTH_FIGURES, markdown_tables, plot_results
from .variants import variant_settings

Progress = Callable[[str, dict], None]

# What makes two runs comparable; methods, variants, seeds and retention points may grow.
PROTOCOL_FIELDS = ("requests", "batch_size", "iterations", "offset", "model", "corpus", "tokens", "steps",
                   "retention_sample", "collapse_batches")
#: A batch has collapsed when its efficacy is under this (%) ...
COLLAPSE_EFFICACY = 5.0
#: ... or the held-out perplexity is over this many times the base model's.
COLLAPSE_PERPLEXITY_RATIO = 10.0
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
    """Iterations at which the requests edited so far are evaluated too (the last one is always added)."""
    retention_every: int = 0
    """Also every this many iterations (0: only ``retention_at`` and the last)."""
    retention_sample: int = 0
    """Retention over a fixed random sample of this many of the requests edited so far (0: all of them)."""
    collapse_batches: int = 3
    """Stop a run once this many batches in a row have collapsed (``collapsed``); 0: never stop."""
    offset: int = 0
    model: str = "smollm2-135m-instruct"
    corpus: str = "model-samples"
    tokens: int = 50_000
    steps: int | None = None
    """Override the optimisation steps (quick runs, CI); None keeps the method's."""

    def __post_init__(self) -> None:
        from ..config import METHODS

        problems = [f"unknown method {m!r}" for m in self.methods if m not in METHODS]
        for v in self.variants:
            try:
                variant_settings(v)
            except InputError as error:
                problems.append(error.message)
        if min(self.retention_every, self.retention_sample, self.collapse_batches) < 0:
            problems.append("retention every, retention sample and collapse batches must be at least 0")
        if self.batch_size < 1 or self.iterations < 1:
            problems.append("batch size and iterations must be at least 1")
        if any(not 1 <= t <= self.iterations for t in self.retention_at):
            problems.append(f"retention iterations {list(self.retention_at)} must be within 1..{self.iterations}")
        if not self.methods or not self.variants or not self.seeds:
            problems.append("give at least one method, variant and seed")
        if problems:
            raise InputError("invalid benchmark: " + "; ".join(problems),
                             hint=f"methods: {', '.join(METHODS)}; variants: none, or parts joined by '+': "
                                  "wd, sp, anchor, mpes, budget<fraction> (e.g. wd+sp, budget0.05)")

    @property
    def retention_points(self) -> tuple[int, ...]:
        every = range(self.retention_every, self.iterations + 1, self.retention_every) if self.retention_every else ()
        return tuple(sorted({*self.retention_at, *every, self.iterations}))

    def run_names(self) -> list[tuple[str, str, str, int]]:
        return [(f"{m}-{v}-seed{s}", m, v, s) for m in self.methods for v in self.variants for s in self.seeds]


def _config(spec: BenchSpec, workspace: Workspace, method: str, variant: str, seed: int):
    from ..config import default_config_for

    m = workspace.model
    config = default_config_for(m["model_type"], m["num_layers"], method, m.get("hidden_size"))
    config = config.replace(**variant_settings(variant), seed=seed)
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


def collapsed(document: dict) -> bool:
    """Has the model collapsed at this evaluation? Its batch's efficacy is under COLLAPSE_EFFICACY %,
    or its held-out perplexity over COLLAPSE_PERPLEXITY_RATIO x the base model's."""
    ratio = document.get("health", {}).get("perplexity_ratio", 1.0)
    return document["latest"]["efficacy"] < COLLAPSE_EFFICACY or not ratio <= COLLAPSE_PERPLEXITY_RATIO


def run_one(base: Workspace, run_root: Path, spec: BenchSpec, method: str, variant: str, seed: int,
            batches, progress: Progress, device: str | None = None) -> list[dict]:
    """Edit and evaluate one run to T iterations (resuming), or until ``spec.collapse_batches``
    batches in a row have ``collapsed``; returns one row per iteration done (``run_rows``).
    ``device``: where the model runs (None: where the base workspace was created)."""
    from .. import ENGINE_VERSION
    from ..jobs.edit import job_id, run_edit
    from ..jobs.evaluate import run_evaluate
    from ..workspace.checkout import checkout, load_base

    ws = Workspace.open(run_root) if Workspace.exists(run_root) else Workspace.create(run_root, base.model)
    config = _config(spec, ws, method, variant, seed)
    ws.adopt_statistics(base, config.layers)
    sample = spec.retention_sample or None
    current, streak = None, 0

    def model_at(t: int):
        nonlocal current
        if current is None or current.iteration > t:
            current = checkout(ws, 0, base=load_base(ws, device=device))
        current.advance_to(ws, t)
        return current

    with ws.lock("wdsp bench"):
        for t, batch in enumerate(batches, start=1):
            done = t in ws.iterations() and ws.record(t).get("job", {}).get("id") == job_id(batch, config, len(batch))
            if done and (engine := ws.record(t).get("engine", {}).get("version")) != ENGINE_VERSION:
                raise InputError(f"{run_root.name} was edited up to iteration {t} by engine {engine}; this wdsp has "
                                 f"engine {ENGINE_VERSION}, and a run must not mix them",
                                 hint="finish it with the wdsp that started it, or start a new --out folder")
            if not done:
                if ws.head != t - 1:
                    ws.set_head(t - 1)  # later, different iterations are archived by the edit
                progress("edit", {"run": run_root.name, "iteration": t})
                run_edit(ws, batch, config, len(batch), current=model_at(t - 1))
            elif ws.head < t:
                ws.set_head(t)
            document = ws.evaluation(t)
            retention = t in spec.retention_points
            if document is None or (retention and "all" not in document):
                progress("evaluate", {"run": run_root.name, "iteration": t, "retention": retention})
                document = run_evaluate(ws, t, retention=retention, current=model_at(t), sample=sample)
            streak = streak + 1 if collapsed(document) else 0
            if spec.collapse_batches and streak >= spec.collapse_batches:
                if "all" not in document:  # the run ends here: its retention is measured here too
                    document = run_evaluate(ws, t, retention=True, current=model_at(t), sample=sample)
                progress("collapsed", {"run": run_root.name, "iteration": t, "since": t - streak + 1})
                break
    return run_rows(ws, spec)


def run_rows(ws: Workspace, spec: BenchSpec) -> list[dict]:
    """One row per iteration of a run that is edited and evaluated, in order: seconds (edit),
    evaluation_seconds, latest, all (at retention points), health (HEALTH_FIGURES), engine.
    Reads only committed files, so it is safe while the run goes on."""
    rows = []
    for t in range(1, spec.iterations + 1):
        if t not in ws.iterations() or t > ws.head or (document := ws.evaluation(t)) is None:
            break
        record = ws.record(t)
        row = {"iteration": t, "seconds": record["summary"]["seconds"], "evaluation_seconds": document.get("seconds"),
               "latest": document["latest"], "engine": record.get("engine", {}).get("version")}
        if "all" in document:
            row["all"] = document["all"]
        if "health" in document:
            row["health"] = {k: document["health"][k] for k in HEALTH_FIGURES}
        rows.append(row)
    return rows


def _collapse_start(rows: list[dict], spec: BenchSpec) -> int | None:
    """The first iteration of the run of ``spec.collapse_batches`` collapsed batches that stopped it."""
    streak = 0
    for row in rows:
        streak = streak + 1 if collapsed({"latest": row["latest"], "health": row.get("health", {})}) else 0
        if spec.collapse_batches and streak >= spec.collapse_batches:
            return row["iteration"] - streak + 1
    return None


def _run_in_process(base_root: str, run_root: str, spec: BenchSpec, method: str, variant: str, seed: int,
                    batches, device: str | None, threads: int) -> list[dict]:
    """``run_one`` in a worker process of ``run_bench(jobs=N)``, with ``threads`` CPU threads."""
    import sys

    import torch

    torch.set_num_threads(threads)

    def progress(event: str, data: dict) -> None:
        print(f"{event}: " + ", ".join(f"{k} {v}" for k, v in data.items()), file=sys.stderr, flush=True)

    return run_one(Workspace.open(Path(base_root)), Path(run_root), spec, method, variant, seed, batches, progress,
                   device)


def _threads_per_job(jobs: int) -> int:
    """OMP_NUM_THREADS when set, else the CPUs shared out among ``jobs`` processes."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    return max(1, (os.cpu_count() or 1) // jobs)


def _check_protocol(out: Path, spec: BenchSpec) -> None:
    saved = out / "spec.json"
    defaults = {f.name: f.default for f in dataclasses.fields(BenchSpec) if f.default is not dataclasses.MISSING}
    protocol = {k: v for k, v in json.loads(json.dumps(dataclasses.asdict(spec))).items() if k in PROTOCOL_FIELDS}
    if saved.exists():
        stored = json.loads(saved.read_text())
        before = {k: stored.get(k, defaults.get(k)) for k in PROTOCOL_FIELDS}
        if before != protocol:
            changed = sorted(k for k in PROTOCOL_FIELDS if before.get(k) != protocol.get(k))
            raise InputError(f"{out} holds a benchmark with other settings ({', '.join(changed)})",
                             hint="use a new --out folder, or the same settings to resume (methods, variants, "
                                  "seeds and retention points may change: runs already done are reused)")


def run_bench(out: str | os.PathLike, spec: BenchSpec, progress: Progress | None = None,
              device: str | None = None, jobs: int = 1) -> dict:
    """Run (or resume) every run of ``spec`` in ``out``; ``device`` places the model (None: the CPU
    for a new benchmark, else where it was created); ``jobs``: runs at once, each in its own process
    (on a CPU each gets ``_threads_per_job`` threads; on a GPU they share it). Returns every figure
    (also in out/bench.json, bench.md and plots/, see ``summarize``)."""
    from ..data.requests import load_requests

    progress = progress or (lambda event, data: None)
    if jobs < 1:
        raise InputError(f"--jobs {jobs}: at least one run must go at a time", hint="e.g. --jobs 2")
    out = Path(out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    _check_protocol(out, spec)
    requests = load_requests(spec.requests, offset=spec.offset, limit=spec.batch_size * spec.iterations)
    if len(requests) < spec.batch_size * spec.iterations:
        raise InputError(f"{spec.requests} has only {len(requests)} records from offset {spec.offset}, "
                         f"{spec.batch_size * spec.iterations} needed", hint="lower --batch-size or --iterations")
    atomic_write_text(out / "spec.json", json.dumps(dataclasses.asdict(spec), indent=2, sort_keys=True))
    batches = [requests[i : i + spec.batch_size] for i in range(0, len(requests), spec.batch_size)]
    base = _open_base(out, spec, progress, device)
    names = spec.run_names()
    if jobs == 1:
        for name, method, variant, seed in names:
            progress("run", {"run": name})
            run_one(base, out / "runs" / name, spec, method, variant, seed, batches, progress, device)
            summarize(out, plots=False)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        threads = _threads_per_job(min(jobs, len(names)))
        progress("parallel", {"jobs": min(jobs, len(names)), "threads each": threads})
        with ProcessPoolExecutor(min(jobs, len(names)), mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_run_in_process, str(base.root), str(out / "runs" / name), spec, method, variant,
                                   seed, batches, device, threads) for name, method, variant, seed in names]
            for future in futures:
                future.result()  # re-raises a run's error here
    return summarize(out)


def summarize(out: str | os.PathLike, plots: bool = True) -> dict:
    """bench.json, bench.md and (``plots``) plots/ from the runs in ``out`` as far as they have got;
    reads only committed files, so it is safe while the benchmark runs. Returns bench.json's content:
    {"spec", "model", "runs": {name: {method, variant, seed, iterations: rows, collapsed_at}}, "plots"}."""
    out = Path(out).absolute()
    if not (out / "spec.json").exists():
        raise InputError(f"{out} holds no benchmark (no spec.json)", hint="give the --out folder of a wdsp bench run")
    stored = json.loads((out / "spec.json").read_text())
    known = {f.name for f in dataclasses.fields(BenchSpec)}
    spec = BenchSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in stored.items() if k in known})
    model = Workspace.open(out / "base").model if Workspace.exists(out / "base") else None
    results = {"spec": dataclasses.asdict(spec), "model": model, "runs": {}}
    for name, method, variant, seed in spec.run_names():
        root = out / "runs" / name
        rows = run_rows(Workspace.open(root), spec) if Workspace.exists(root) else []
        if rows:
            results["runs"][name] = {"method": method, "variant": variant, "seed": seed, "iterations": rows,
                                     "collapsed_at": _collapse_start(rows, spec)}
    if results["runs"]:
        atomic_write_text(out / "bench.md", markdown_tables(results))
        if plots:
            results["plots"] = [str(p) for p in plot_results(results, out / "plots")]
    else:
        atomic_write_text(out / "bench.md", f"Requests: {spec.requests}, B = {spec.batch_size}, T = {spec.iterations}: "
                                            "no iteration is evaluated yet.\n")
    atomic_write_text(out / "bench.json", json.dumps(results, indent=1, sort_keys=True, allow_nan=True))
    return results
