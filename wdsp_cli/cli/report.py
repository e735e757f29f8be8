"""``wdsp report``: the stored evaluations of every iteration, as a table, JSON or a plot."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import (
    JsonOption,
    WorkspaceOption,
    emit_json,
    fmt_pct,
    handles_errors,
    stdout,
)


@handles_errors
def report(
    plot: Path = typer.Option(None, "--plot", help="Also draw the curves into this PNG file (and the health "
                                                    "figures into <name>-health.png)."),
    scope: str = typer.Option("latest", "--scope", help="latest (each batch right after its edit) or all "
                                                         "(every request edited so far, where evaluated)."),
    workspace: Path = WorkspaceOption,
    json: bool = JsonOption,
) -> None:
    """Metrics per iteration from the evaluations `wdsp evaluate` stored (nothing is recomputed)."""
    from rich.table import Table

    from ..bench.plots import HEALTH_PANELS, plot_curves
    from ..errors import InputError
    from .common import open_workspace

    if scope not in ("latest", "all"):
        raise InputError(f"--scope {scope!r} is not latest or all", hint="use --scope latest or --scope all")
    ws = open_workspace(workspace)
    rows = []
    for t in ws.iterations():
        document = ws.evaluation(t)
        if document and scope in document:
            health = {k: v for k, v in document.get("health", {}).items() if k != "drift"}
            rows.append({"iteration": t, "after_head": t > ws.head, **document[scope],
                         **({"health": health} if health else {})})
    if not rows:
        raise InputError("no stored evaluations in this workspace", hint="run `wdsp evaluate` after each edit")
    health_plot = None
    if plot:
        plot_curves({scope: [(r["iteration"], r) for r in rows if not r["after_head"]]}, plot,
                    title=f"{ws.root.name}: {scope}")
        healthy = [(r["iteration"], r["health"]) for r in rows if not r["after_head"] and "health" in r]
        if healthy:
            health_plot = plot_curves({"health": healthy}, Path(plot).with_name(Path(plot).stem + "-health.png"),
                                      title=f"{ws.root.name}: health", panels=HEALTH_PANELS)
    if json:
        emit_json({"scope": scope, "iterations": rows, "plot": str(plot) if plot else None,
                   "health_plot": str(health_plot) if health_plot else None})
        return
    table = Table(title=f"Stored evaluations ({scope})")
    for column in ("iter", "reqs", "eff.", "gen.", "loc.", "loc.=base", "Score", "ppl/base", "drift"):
        table.add_column(column, justify="right")
    for r in rows:
        h = r.get("health")
        table.add_row(f"{r['iteration']}" + (" (undone)" if r["after_head"] else ""), str(r["requests"]),
                      fmt_pct(r["efficacy"]), fmt_pct(r["generalization"]), fmt_pct(r["locality"]),
                      fmt_pct(r.get("locality_base")), fmt_pct(r["score"]),
                      f"{h['perplexity_ratio']:.3f}" if h else "-",
                      f"{100 * h['max_relative_frobenius']:.2f}%" if h else "-")
    stdout.print(table)
    stdout.print("ppl/base: perplexity on held-out text over the base model's; drift: the largest "
                 "||W_t - W_0|| / ||W_0|| of the edited matrices (wdsp evaluate's health figures).")
    if plot:
        stdout.print(f"Plot written to {plot}" + (f" and {health_plot}" if health_plot else ""))
