"""``wdsp rollback``: make an earlier (or a later, kept) iteration the current one."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import JsonOption, WorkspaceOption, emit_json, handles_errors, stdout


@handles_errors
def rollback(
    iteration: int = typer.Argument(..., help="The iteration to return to (0 = the base model); a negative "
                                              "number counts back from HEAD (-1 = the one before HEAD)."),
    workspace: Path = WorkspaceOption,
    json: bool = JsonOption,
) -> None:
    """Make ITERATION the current one (0 = the base model; -N = N before HEAD); no prompt, for scripts.

    Nothing is deleted: the iterations after it stay, and rolling back to one of them rolls
    forward again, until the next `wdsp edit` moves them to the workspace's archive/ folder."""
    from ..errors import WorkspaceError
    from .common import open_workspace

    ws = open_workspace(workspace)
    with ws.lock("wdsp rollback"):
        ws.refuse_while_reverting("wdsp rollback")
        previous = ws.head_or_none()  # None: HEAD was damaged, and this repairs it
        target = (previous or 0) + iteration if iteration < 0 else iteration
        if target < 0:
            raise WorkspaceError(f"HEAD is {previous}, so {iteration} would go back past the base model (0)",
                                 hint=f"go back at most {previous}: wdsp rollback -{previous} (or 0)" if previous
                                 else "HEAD is already the base model; `wdsp status` lists the iterations")
        ws.set_head(target)
    kept = [t for t in ws.iterations() if t > target]
    document = {"head": target, "previous_head": previous, "kept_after_head": kept}
    if json:
        emit_json(document)
        return
    stdout.print(f"HEAD: {previous} -> {target}."
                 + (f" Iterations {kept[0]}-{kept[-1]} are kept; the next edit moves them to archive/." if kept else ""))
