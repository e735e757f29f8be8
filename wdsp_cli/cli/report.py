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
    plot: Path = typer.Option(None, "--plot", help="Also draw the curves into this PNG file."),
    scope: str = typer.Option("latest", "--scope", help="latest (each batch right after its edit) or all "
                                                         "(every request edited so far, where evaluated)."),
    workspace: Path = WorkspaceOption,
    json: bool = JsonOption,
) -> None:
    """Metrics per iteration from the evaluations `wdsp evaluate` stored (nothing is recomputed)."""
    from rich.table import Table

    from ..bench.plots import plot_curves
    from ..errors import InputError
    from .common import open_workspace

    if scope not in ("latest", "all"):
        raise InputError(f"--scope {scope!r} is not latest or all", hint="use --scope latest or --scope all")
    ws = open_workspace(workspace)
    rows = []
    for t in ws.iterations():
        document = ws.evaluation(t)
        if document and scope in document:
            rows.append({"iteration": t, "after_head": t > ws.head, **document[scope]})
    if not rows:
        raise InputError("no stored evaluations in this workspace", hint="run `wdsp evaluate` after each edit")
    if plot:
        plot_curves({scope: [(r["iteration"], r) for r in rows if not r["after_head"]]}, plot,
                    title=f"{ws.root.name}: {scope}")
    if json:
        emit_json({"scope": scope, "iterations": rows, "plot": str(plot) if plot else None})
        return
    table = Table(title=f"Stored evaluations ({scope})")
    for column in ("iteration", "requests", "efficacy", "generalisation", "locality", "locality vs base", "Score"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(f"{r['iteration']}" + (" (after HEAD)" if r["after_head"] else ""), str(r["requests"]),
                      fmt_pct(r["efficacy"]), fmt_pct(r["generalization"]), fmt_pct(r["locality"]),
                      fmt_pct(r.get("locality_base")), fmt_pct(r["score"]))
    stdout.print(table)
    if plot:
        stdout.print(f"Plot written to {plot}")
