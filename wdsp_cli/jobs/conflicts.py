"""Conflicts of new requests with a workspace's committed ones (``data.conflicts`` on a workspace).

Public API:
    committed_requests(workspace, upto=None) -> (list of (iteration, requests), unreadable iterations)
    workspace_conflicts(workspace, requests, batch_size) -> ConflictReport
    edit_conflicts(workspace, requests, config, batch_size, resume=True) -> ConflictReport
    refuse_conflicts(report, facts) raises ConflictError when the report holds any

Torch-free (reads requests.jsonl files only), so ``wdsp conflicts`` answers at once and ``wdsp
edit`` checks before it loads the model. A committed iteration whose requests cannot be read is
listed as unreadable and not checked: the check is advisory, ``wdsp check`` reports the damage.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..config import EditConfig
from ..data.conflicts import ConflictReport, find_conflicts
from ..data.requests import EditRequest
from ..errors import ConflictError, WorkspaceError
from ..workspace.store import Workspace
from .edit import plan_edit


def committed_requests(workspace: Workspace, upto: int | None = None
                       ) -> tuple[list[tuple[int, list[EditRequest]]], list[int]]:
    """(iteration, its requests) for the committed iterations 1..``upto`` (default HEAD): the facts
    in force in the model at ``upto``. Iterations after it (after a rollback) do not count. Second:
    the iterations in that range whose requests.jsonl is missing or damaged."""
    upto = workspace.head if upto is None else upto
    found, unreadable = [], []
    for t in range(1, upto + 1):
        try:
            found.append((t, workspace.requests(t)))
        except WorkspaceError:
            unreadable.append(t)
    return found, unreadable


def workspace_conflicts(workspace: Workspace | None, requests: Sequence[EditRequest],
                        batch_size: int) -> ConflictReport:
    """The conflicts of ``requests`` edited next, in batches of ``batch_size``, into ``workspace``
    at HEAD (``wdsp conflicts``); with no workspace, those among the requests only."""
    if workspace is None:
        return find_conflicts(requests, batch_size)
    history, unreadable = committed_requests(workspace)
    return find_conflicts(requests, batch_size, history, first_iteration=workspace.head + 1, unreadable=unreadable)


def edit_conflicts(workspace: Workspace, requests: Sequence[EditRequest], config: EditConfig, batch_size: int,
                   resume: bool = True) -> ConflictReport:
    """The conflicts of the batches ``wdsp edit`` is about to edit: with resume, the batches of this
    job already committed (or fast-forwarded over) are skipped, as the edit skips them, and count
    as earlier facts for the rest."""
    plan = plan_edit(workspace, requests, config, batch_size, resume)
    head = workspace.head + len(plan.fast_forward)
    history, unreadable = committed_requests(workspace, head)
    pending = [r for batch in plan.batches[plan.done:] for r in batch]
    return find_conflicts(pending, batch_size, history, first_iteration=head + 1, first_batch=plan.done + 1,
                          unreadable=unreadable)


def refuse_conflicts(report: ConflictReport, facts: str, workspace: Workspace) -> None:
    """``ConflictError`` (exit 9) when ``report`` holds a conflict (``wdsp edit --on-conflict refuse``)."""
    if report.conflicts:
        raise ConflictError(f"{facts}: {report.summary()}; nothing was edited",
                            hint=f"`wdsp conflicts {facts} -b {report.batch_size} -w {workspace.root}` lists them; "
                                 "--on-conflict warn edits anyway")
