"""``wdsp revert`` and ``wdsp forget``: undo one iteration (or chosen facts) and keep the later ones."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import JsonOption, WorkspaceOption, emit_json, handles_errors, stderr, stdout

DRY_RUN = typer.Option(False, "--dry-run", help="Print the plan and its estimated time; change nothing.")


def _carry_out(workspace: Path | None, command_line: str, make_plan, dry_run: bool, json: bool) -> None:
    from ..errors import WorkspaceError
    from ..jobs.revert import estimated_seconds, run_revert
    from .common import open_workspace

    ws = open_workspace(workspace)
    with ws.lock(" ".join(command_line.split()[:2])):
        plan = ws.pending_revert()
        if plan is not None and plan["command"] != command_line:
            raise WorkspaceError(f"another revert is unfinished: {plan['command']}",
                                 hint=f"finish it first: {plan['command']} (the same command resumes)")
        if plan is not None:
            stderr.print(f"resuming {plan['command']} (planned {plan['planned_at']}), HEAD {ws.head}")
        else:
            plan = make_plan(ws)
        document = {"plan": {k: v for k, v in plan.items() if k != "replay"},
                    "replay": [{"iteration": plan["reverted"] + j, "from": b["from"], "requests": len(b["requests"]),
                                "removed": b["removed"], "estimated_seconds": b["seconds"]}
                               for j, b in enumerate(plan["replay"])],
                    "estimated_seconds": estimated_seconds(plan), "dry_run": dry_run}
        if dry_run:
            _render_plan(document, json)
            return

        def progress(event: str, data: dict) -> None:
            if event == "archived" and data["iterations"]:
                moved = data["iterations"]
                stderr.print(f"archived iterations {moved[0]}-{moved[-1]} to {data['folder']}")
            elif event == "replay":
                stderr.print(f"replaying iteration {data['from']} as {data['iteration']} ({data['requests']} requests)")

        document["report"] = run_revert(ws, plan, progress)
    if json:
        emit_json(document)
        return
    report = document["report"]
    stdout.print(f"{report['command']}: done, HEAD {report['head']}; "
                 f"{sum(e['replayed'] for e in report['iterations'])} iteration(s) replayed; "
                 f"the replaced ones are in {', '.join(report['archives']) or 'archive/'}.")


def _render_plan(document: dict, json: bool) -> None:
    if json:
        emit_json(document)
        return
    from rich.table import Table

    plan = document["plan"]
    stdout.print(f"{plan['command']}: HEAD {plan['head']} -> {plan['reverted'] - 1}, iterations "
                 f"{plan['reverted']}-{plan['head']} to archive/, then replay:")
    table = Table()
    for column in ("new iteration", "from iteration", "requests", "removed", "est. s"):
        table.add_column(column, justify="right")
    for batch in document["replay"]:
        table.add_row(str(batch["iteration"]), str(batch["from"]), str(batch["requests"]), str(batch["removed"]),
                      f"{batch['estimated_seconds']:.0f}")
    stdout.print(table)
    stdout.print(f"Estimated edit time: {document['estimated_seconds']:.0f} s (as the replayed iterations took), "
                 "plus loading the model. Nothing was changed (--dry-run).")


@handles_errors
def revert(
    iteration: int = typer.Argument(..., help="The iteration to undo (K); K+1..HEAD are kept."),
    only: list[str] = typer.Option(None, "--only", metavar="ID",
                                   help="Remove only these requests of iteration K (repeatable)."),
    dry_run: bool = DRY_RUN,
    workspace: Path = WorkspaceOption,
    json: bool = JsonOption,
) -> None:
    """Undo iteration K and keep the later ones: back to K-1, then K+1..HEAD are replayed (same
    batches and settings) as new iterations; the replaced ones go to archive/.

    A kill at any point leaves a workspace that the same command finishes; until then `edit` and
    `rollback` refuse."""
    from ..jobs.revert import plan_revert, revert_command

    _carry_out(workspace, revert_command(iteration, only), lambda ws: plan_revert(ws, iteration, only or None),
               dry_run, json)


@handles_errors
def forget(
    ids: list[str] = typer.Argument(..., metavar="ID...", help="Request ids (case_id, id, or 'line N') to remove."),
    dry_run: bool = DRY_RUN,
    workspace: Path = WorkspaceOption,
    json: bool = JsonOption,
) -> None:
    """Remove chosen facts: the first iteration that edited one of them and every later one are
    replayed without them (like `revert K --only`, wherever they were edited)."""
    from ..jobs.revert import forget_command, plan_forget

    _carry_out(workspace, forget_command(ids), lambda ws: plan_forget(ws, ids), dry_run, json)
