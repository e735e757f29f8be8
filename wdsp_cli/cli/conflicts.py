"""``wdsp conflicts``: which requests of a file meet earlier facts (docs/conflicts.md); also the
warning ``wdsp edit`` prints before it loads the model. Torch-free."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from .common import JsonOption, WorkspaceOption, emit_json, handles_errors, stderr, stdout

FAIL_ON = ("any", "contradiction", "never")
ON_CONFLICT = ("warn", "refuse")
_SHOWN_IN_WARNING = 5


def failing(report, fail_on: str) -> bool:
    """Whether ``report`` makes ``wdsp conflicts --fail-on FAIL_ON`` exit 9."""
    from ..data.conflicts import CONTRADICTION

    if fail_on == "never":
        return False
    return bool(report.count(severity=CONTRADICTION) if fail_on == "contradiction" else report.conflicts)


def check_choice(value: str, choices: tuple[str, ...], option: str) -> str:
    """``value`` if it is one of ``choices``, else an InputError (exit 2) naming ``option``."""
    from ..errors import InputError

    if value not in choices:
        raise InputError(f"{option} {value!r} is not one of {', '.join(choices)}",
                         hint=f"use {' or '.join(f'{option} {c}' for c in choices)}")
    return value


def warn_conflicts(report, facts: Path | str, batch_size: int, workspace: Path | str) -> None:
    """The warning ``wdsp edit`` prints on stderr when its requests meet earlier facts: the summary,
    the first few conflicts, and the command that lists them all."""
    if report.unreadable:
        stderr.print(f"[bold yellow]Warning:[/] the requests of iteration(s) {list(report.unreadable)} cannot be "
                     "read, so they were not checked for conflicts (`wdsp check` says why)", soft_wrap=True)
    if not report.conflicts:
        return
    from rich.markup import escape

    stderr.print(f"[bold yellow]Warning:[/] {escape(str(facts))}: {escape(report.summary())}.", soft_wrap=True)
    for conflict in report.conflicts[:_SHOWN_IN_WARNING]:
        stderr.print(f"  {conflict.describe()}", soft_wrap=True, markup=False)
    more = len(report.conflicts) - _SHOWN_IN_WARNING
    stderr.print((f"  ... and {more} more; " if more > 0 else "  ")
                 + f"`wdsp conflicts {facts} -b {batch_size} -w {workspace}` lists them (docs/conflicts.md).",
                 soft_wrap=True, markup=False)


@handles_errors
def conflicts(
    facts: Path = typer.Argument(..., help="Requests: facts JSONL (docs/facts-format.md), CounterFact or zsRE."),
    batch_size: int = typer.Option(20, "--batch-size", "-b", help="Requests per iteration, as wdsp edit would "
                                                                  "split them."),
    format: str = typer.Option("auto", "--format", help="auto, facts, counterfact-rome, counterfact-easyedit, zsre-mend."),
    limit: int = typer.Option(None, "--limit", help="Check only this many records."),
    offset: int = typer.Option(0, "--offset", help="Skip this many records first."),
    fail_on: str = typer.Option("any", "--fail-on", help="Exit 8 when any conflict is found (any), only when a "
                                                         "batch contradicts itself (contradiction), or never."),
    workspace: Path = WorkspaceOption,
    json: bool = JsonOption,
) -> None:
    """List the requests of FACTS that meet earlier facts: ones that change a fact committed in
    iterations 1..HEAD or in an earlier batch of FACTS (the same target again, or a new one), and
    batches holding several requests about one subject (a contradiction when they share the
    prompt and differ in target). Reads only; loads no model.

    Exit code 0 when there is none, 8 when there is one (see --fail-on), with --json too. Without
    -w/--workspace and $WDSP_WORKSPACE, and no workspace in the current folder, the file is
    checked alone."""
    from ..data.requests import load_requests
    from ..errors import InputError
    from ..jobs.conflicts import workspace_conflicts
    from ..workspace.store import ENV_VAR, Workspace, find_root

    check_choice(fail_on, FAIL_ON, "--fail-on")
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}", hint="e.g. --batch-size 20")
    explicit = workspace is not None or bool(os.environ.get(ENV_VAR))
    root = find_root(workspace)
    ws = Workspace.open(root) if explicit or Workspace.exists(root) else None
    requests = load_requests(facts, format, limit=limit, offset=offset)
    report = workspace_conflicts(ws, requests, batch_size)
    failed = failing(report, fail_on)
    if json:
        emit_json({"facts": str(facts), "workspace": str(ws.root) if ws else None,
                   "head": ws.head if ws else None, "fail_on": fail_on, "failed": failed, **report.to_dict()})
    else:
        render(report, facts, ws)
    if failed:
        from ..errors import ConflictError

        raise typer.Exit(ConflictError.exit_code)


def render(report, facts: Path, ws) -> None:
    from rich.table import Table
    from rich.text import Text

    from ..data.conflicts import CHANGES_AGAIN, DUPLICATE, SAME_BATCH

    against = (f"iterations 1-{report.first_iteration - 1} of {ws.root}" if ws and report.first_iteration > 1
               else f"{ws.root} (no iterations yet)" if ws else "no workspace (the file alone)")
    stdout.print(f"{facts}: {report.requests} request(s) in {report.batches} batch(es) of {report.batch_size}, "
                 f"checked against {against}.", soft_wrap=True, markup=False)
    again = [c for c in report.conflicts if c.kind == CHANGES_AGAIN]
    if again:
        table = Table(title="Facts that change again")
        for column in ("batch", "request", "fact", "set before by", "target"):
            table.add_column(column, overflow="fold")
        for c in again:
            earlier, new = c.requests
            at = f"iteration {earlier.iteration}" if earlier.committed else f"batch {earlier.batch}"
            change = f"{new.request.target_new} (the same again)" if c.severity == DUPLICATE else \
                f"{earlier.request.target_new} -> {new.request.target_new}"
            cells = (str(new.batch), new.request.request_id, new.request.rewrite_prompt,
                     f"{earlier.request.request_id}, {at}", change)
            table.add_row(*map(Text, cells))  # Text: no markup in the records' text
        stdout.print(table)
    same = [c for c in report.conflicts if c.kind == SAME_BATCH]
    if same:
        table = Table(title="Requests about one subject in one batch")
        for column in ("batch", "subject", "requests", ""):
            table.add_column(column, overflow="fold")
        for c in same:
            lines = "\n".join(f"{r.request.request_id}: {r.request.prompt} -> {r.request.target_new}"
                              for r in c.requests)
            table.add_row(*map(Text, (str(c.batch), c.requests[0].request.subject, lines, c.severity)))
        stdout.print(table)
        stdout.print("Requests about one subject share the subject's key in one solve, and pull it apart; in "
                     "different batches they do not (docs/conflicts.md).", soft_wrap=True, markup=False)
    if report.unreadable:
        stderr.print(f"[bold yellow]Warning:[/] the requests of iteration(s) {list(report.unreadable)} cannot be "
                     "read and were not checked (`wdsp check` says why)", soft_wrap=True)
    stdout.print(("Conflicts: " + report.summary() + ".") if report.conflicts else "No conflicts.",
                 soft_wrap=True, markup=False)
