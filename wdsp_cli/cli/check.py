"""``wdsp check``: read every file of the workspace and say what is damaged and how to repair it."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import JsonOption, WorkspaceOption, emit_json, handles_errors, stdout


@handles_errors
def check(workspace: Path = WorkspaceOption, json: bool = JsonOption) -> None:
    """Read every file the workspace depends on (HEAD, config, templates, statistics, every
    iteration's diff, keys, requests and record, evaluations) and list each problem with the
    repair it needs. Exit code 0 when the workspace is sound, 6 when it is damaged.
    Reads only; loads no model."""
    from ..errors import WorkspaceError
    from ..jobs.check import check_workspace
    from .common import open_workspace

    document = check_workspace(open_workspace(workspace))
    if json:
        emit_json(document)
    else:
        for problem in document["problems"]:
            stdout.print(f"[bold red]{problem['file']}[/]: {problem['problem']}\n  repair: {problem['repair']}",
                         soft_wrap=True)
        if document["leftovers"]:
            stdout.print(f"{len(document['leftovers'])} leftover(s) of interrupted writes "
                         f"({', '.join(document['leftovers'])}); the next mutating command removes them.",
                         soft_wrap=True)
        if document["ok"]:
            stdout.print(f"Workspace {document['workspace']} is sound: {len(document['checked'])} files read, "
                         f"HEAD = {document['head']}.", soft_wrap=True)
        else:
            stdout.print(f"Workspace {document['workspace']} is damaged: {len(document['problems'])} problem(s).",
                         soft_wrap=True)
    if not document["ok"]:
        raise typer.Exit(WorkspaceError.exit_code)
