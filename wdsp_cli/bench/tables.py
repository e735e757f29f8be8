"""A benchmark's figures as the paper shows them: seed-averaged rows, Markdown tables, curves.

Public API:
    seed_averaged(results) -> {label: [rows]}   per iteration, averaged over the seeds that reached it
    markdown_tables(results) -> str             Score at iterations and its average; Avg.Eff / Gen / Loc;
                                                retention; health at selected iterations
    plot_results(results, folder) -> [Path]     plots/<method>.png and plots/grid.png of every run

``results`` is ``bench.protocol.summarize``'s document.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path

from .variants import variant_label

HEALTH_FIGURES = ("perplexity_ratio", "locality_prompts", "max_relative_frobenius", "max_spectral_ratio")


def _mean(values) -> float:
    values = [v for v in values if v is not None and v == v]
    return sum(values) / len(values) if values else float("nan")


def seed_averaged(results: dict) -> dict[str, list[dict]]:
    """{"MEMIT+WD": [per-iteration figures averaged over the seeds that reached the iteration]}, in
    the grid's order; a run that stopped at its collapse contributes up to its last iteration."""
    grouped: dict[str, list[list[dict]]] = {}
    for run in results["runs"].values():
        label = run["method"].upper() + variant_label(run["variant"])
        grouped.setdefault(label, []).append(run["iterations"])
    averaged = {}
    for label, runs in grouped.items():
        rows = []
        for t in range(max(len(r) for r in runs)):
            reached = [r[t] for r in runs if t < len(r)]
            row = {"iteration": t + 1, "seconds": _mean(r["seconds"] for r in reached), "runs": len(reached)}
            for scope in ("latest", "all"):
                if all(scope in r for r in reached):
                    row[scope] = {k: _mean(r[scope].get(k) for r in reached)
                                  for k in ("efficacy", "generalization", "locality", "locality_base", "score")}
            if all("health" in r for r in reached):
                row["health"] = {k: _mean(r["health"][k] for r in reached) for k in HEALTH_FIGURES}
            rows.append(row)
        averaged[label] = rows
    return averaged


def _cell(rows: list[dict], t: int, scope: str, key: str, digits: int = 2) -> str:
    """One figure of a table, or "—" where the run stopped before iteration t."""
    value = rows[t - 1].get(scope, {}).get(key) if t <= len(rows) else None
    return "—" if value is None or value != value else f"{value:.{digits}f}"


def _marks(iterations: int) -> list[int]:
    """Iterations shown in the Score table: all up to 10, else 1, every T // 5 and T."""
    if iterations <= 10:
        return list(range(1, iterations + 1))
    step = max(1, iterations // 5)
    return sorted({1, *range(step, iterations + 1, step), iterations})


def markdown_tables(results: dict) -> str:
    spec = results["spec"]
    averaged = seed_averaged(results)
    marks = sorted({*_marks(spec["iterations"]), *(len(rows) for rows in averaged.values())})  # + where each run is
    protocol = next(iter(results["runs"].values()))["iterations"][0]["latest"].get("protocol", "")
    lines = [f"Requests: {spec['requests']} (offset {spec['offset']}), B = {spec['batch_size']}, "
             f"T = {spec['iterations']}, seeds {spec['seeds']}, model {spec['model']}, {protocol} metrics (%).", ""]
    progress = [f"{name}: {len(run['iterations'])} of {spec['iterations']} iterations"
                + (f", collapsed from iteration {run['collapsed_at']} (stopped)" if run.get("collapsed_at") else "")
                for name, run in results["runs"].items()]
    lines += ["Runs: " + "; ".join(progress) + ".", "",
              "Score of each batch right after its edit, at selected iterations, and its average "
              "(— : the run has not got there, or stopped at its collapse)", "",
              "| Method | " + " | ".join(f"@{t}" for t in marks) + " | Avg |", "|---" * (len(marks) + 2) + "|"]
    for label, rows in averaged.items():
        lines.append(f"| {label} | " + " | ".join(_cell(rows, t, "latest", "score") for t in marks)
                     + f" | {_mean(r['latest']['score'] for r in rows):.2f} |")
    lines += ["", "Averages over the iterations done (each batch right after its edit)", "",
              "| Method | iterations | Avg.Eff | Avg.Gen | Avg.Loc | Avg.Loc vs base | median s/batch |",
              "|---|---|---|---|---|---|---|"]
    for label, rows in averaged.items():
        mean = lambda k: _mean(r["latest"][k] for r in rows)  # noqa: E731
        lines.append(f"| {label} | {len(rows)} | {mean('efficacy'):.2f} | {mean('generalization'):.2f} | "
                     f"{mean('locality'):.2f} | {mean('locality_base'):.2f} | "
                     f"{statistics.median(r['seconds'] for r in rows):.1f} |")
    points = sorted({r["iteration"] for rows in averaged.values() for r in rows if "all" in r})
    if points:
        sample = spec.get("retention_sample")
        scope = f"a fixed random sample of {sample} of the requests edited so far" if sample else \
            "every request edited so far"
        lines += ["", f"Retention: {scope}, evaluated at iteration t (Eff / Gen / Loc / Score)", "",
                  "| Method | " + " | ".join(f"@{t}" for t in points) + " |", "|---" * (len(points) + 1) + "|"]
        for label, rows in averaged.items():
            cells = [rows[t - 1]["all"] if t <= len(rows) and "all" in rows[t - 1] else None for t in points]
            lines.append(f"| {label} | " + " | ".join(
                "—" if c is None else
                f"{c['efficacy']:.1f} / {c['generalization']:.1f} / {c['locality']:.1f} / **{c['score']:.1f}**"
                for c in cells) + " |")
    if all("health" in r for rows in averaged.values() for r in rows):
        lines += ["", "Health at selected iterations: perplexity / base on held-out text; unrelated prompts whose "
                  "next token is the base's (%); max ||W - W0||_F / ||W0||_F; max sigma_1 / sigma_1(W0)", "",
                  "| Method | " + " | ".join(f"@{t}" for t in marks) + " |", "|---" * (len(marks) + 1) + "|"]
        for label, rows in averaged.items():
            lines.append(f"| {label} | " + " | ".join(
                "—" if t > len(rows) else
                f"{_cell(rows, t, 'health', 'perplexity_ratio', 3)} / {_cell(rows, t, 'health', 'locality_prompts', 1)}"
                f" / {_cell(rows, t, 'health', 'max_relative_frobenius', 3)}"
                f" / {_cell(rows, t, 'health', 'max_spectral_ratio', 3)}" for t in marks) + " |")
    return "\n".join(lines) + "\n"


def plot_results(results: dict, folder: str | os.PathLike) -> list[Path]:
    """out/plots/<method>.png: efficacy, generalisation, locality and Score of each batch right
    after its edit against the iteration, one line per variant (seed-averaged); and
    out/plots/grid.png: Score, retention Score and the health figures of every run of the grid."""
    from .plots import HEALTH_PANELS, plot_curves

    averaged = seed_averaged(results)
    spec = results["spec"]
    paths = []
    for method in spec["methods"]:
        series = {label: [(r["iteration"], r["latest"]) for r in rows]
                  for label, rows in averaged.items() if label.split("+")[0] == method.upper()}
        if series:
            paths.append(plot_curves(series, Path(folder) / f"{method}.png",
                                     title=f"{method.upper()}: B = {spec['batch_size']}"))
    grid = {label: [(r["iteration"], {"score": r["latest"]["score"], "efficacy": r["latest"]["efficacy"],
                                      "retention": r.get("all", {}).get("score"), **r.get("health", {})})
                    for r in rows] for label, rows in averaged.items()}
    panels = (("score", "Score (batch)"), ("efficacy", "Efficacy (batch)"), ("retention", "Score (retention)"),
              *HEALTH_PANELS)
    paths.append(plot_curves(grid, Path(folder) / "grid.png", panels=panels, columns=4,
                             title=f"{Path(spec['requests']).name}: B = {spec['batch_size']}, all runs"))
    return paths
