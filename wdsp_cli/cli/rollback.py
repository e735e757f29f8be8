"""``wdsp rollback``: make an earlier (or a later, kept) iteration the current one."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import JsonOption, WorkspaceOption, emit_json, handles_errors, stdout


@handles_errors
def rollback(
    iteration: int = typer.Argument(..., help="The iteration to return to (0 = the base model)."),
    workspace: Path = WorkspaceOption,
    json: bool = JsonOption,
) -> None:
    """Make ITERATION the current one (0 = the base model); no prompt, for scripts.

    Nothing is deleted: the iterations after it stay, and rolling back to one of them rolls
    forward again, until the next `wdsp edit` moves them to the workspace's archive/ folder."""
    from .common import open_workspace

    ws = open_workspace(workspace)
    with ws.lock("wdsp rollback"):
        previous = ws.head_or_none()  # None: HEAD was damaged, and this repairs it
        ws.set_head(iteration)
    kept = [t for t in ws.iterations() if t > iteration]
    document = {"head": iteration, "previous_head": previous, "kept_after_head": kept}
    if json:
        emit_json(document)
        return
    stdout.print(f"HEAD: {previous} -> {iteration}."
                 + (f" Iterations {kept[0]}-{kept[-1]} are kept; the next edit moves them to archive/." if kept else ""))
