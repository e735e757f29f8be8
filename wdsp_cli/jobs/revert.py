"""Undo one iteration, or chosen facts, and keep the later iterations: ``wdsp revert`` / ``wdsp forget``.

Public API:
    plan_revert(workspace, iteration, only=None) -> plan    iteration K goes (or only the requests ``only``)
    plan_forget(workspace, ids) -> plan                     the requests ``ids`` go, wherever they were edited
    revert_command(iteration, only), forget_command(ids)    the command line a plan is named by
    run_revert(workspace, plan, progress=None, current=None) -> report      call under workspace.lock()

A plan (a JSON document, kept in the workspace as revert.json until the replay is done) replays
the requests of iterations K..HEAD, with each one's batch boundaries and configuration, minus what
goes, as new iterations K, K+1, ... on the model at K-1. The replaced iterations are moved to
archive/ as an edit after a rollback moves them. The result equals, bit for bit, a workspace that
edited the same batches without what went: the iteration numbers, which seed SP's dropout, are
the new ones, and AlphaEdit's state is rebuilt from the iterations kept.

Crash-only: the plan is written before anything changes; then HEAD moves to K-1, the old
iterations are archived, and each replayed batch is committed as an ordinary iteration. Running
the same command again after a kill at any point finishes the plan: committed replays are
recognised by their job ids and skipped. While a plan is pending, ``edit`` and ``rollback`` refuse.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..config import EditConfig
from ..data.requests import request_from_dict, request_to_dict
from ..errors import InputError, WorkspaceError
from ..workspace.store import Workspace, now

Progress = Callable[[str, dict], None]


def _replay(workspace: Workspace, first: int, keep) -> list[dict]:
    """Iterations first..HEAD as replay batches, each with the requests ``keep(iteration, request)``."""
    batches = []
    for s in range(first, workspace.head + 1):
        requests, record = workspace.requests(s), workspace.record(s)
        kept = [r for r in requests if keep(s, r)]
        if kept:
            seconds = record.get("summary", {}).get("seconds", 0.0) * len(kept) / max(1, len(requests))
            batches.append({"from": s, "requests": [request_to_dict(r) for r in kept], "config": record["config"],
                            "removed": len(requests) - len(kept), "seconds": round(seconds, 2)})
    return batches


def _plan(workspace: Workspace, command: str, first: int, removed: list[str] | None, replay: list[dict]) -> dict:
    return {"command": command, "reverted": first, "head": workspace.head, "removed": removed, "replay": replay,
            "archived": False, "archives": [], "planned_at": now()}


def revert_command(iteration: int, only: Sequence[str] | None = None) -> str:
    return f"wdsp revert {iteration}" + "".join(f" --only {i}" for i in only or ())


def forget_command(ids: Sequence[str]) -> str:
    return "wdsp forget " + " ".join(ids)


def plan_revert(workspace: Workspace, iteration: int, only: Sequence[str] | None = None) -> dict:
    """Iteration ``iteration`` (K) goes, or with ``only`` just those of its requests (by request id);
    iterations K+1..HEAD are replayed after it."""
    head = workspace.head
    if not 1 <= iteration <= head:
        raise InputError(f"iteration {iteration} cannot be reverted: HEAD is {head}"
                         + (" (no edits yet)" if head == 0 else ""),
                         hint=f"give an iteration between 1 and {head}; `wdsp status` lists them" if head
                         else "edit first: wdsp edit FACTS.jsonl")
    if only:
        ids = {r.request_id for r in workspace.requests(iteration)}
        missing = [i for i in only if i not in ids]
        if missing:
            raise InputError(f"iteration {iteration} has no request(s) {', '.join(missing)}",
                             hint=f"its requests: {', '.join(sorted(ids)[:12])}{' ...' if len(ids) > 12 else ''}; "
                                  "or `wdsp forget ID` to find them wherever they were edited")
        gone = set(only)
        keep = lambda s, r: s != iteration or r.request_id not in gone  # noqa: E731
    else:
        keep = lambda s, r: s != iteration  # noqa: E731
    removed = list(only) if only else None
    return _plan(workspace, revert_command(iteration, only), iteration, removed, _replay(workspace, iteration, keep))


def plan_forget(workspace: Workspace, ids: Sequence[str]) -> dict:
    """The requests ``ids`` go from every iteration up to HEAD that edited them; the first such
    iteration and every later one are replayed without them."""
    if not ids:
        raise InputError("give the ids of the requests to forget", hint="wdsp forget ID [ID ...]; `wdsp status` "
                                                                         "and iterations/*/requests.jsonl show them")
    gone, where = set(ids), {}
    for s in range(1, workspace.head + 1):
        for r in workspace.requests(s):
            if r.request_id in gone:
                where.setdefault(r.request_id, s)
    missing = [i for i in ids if i not in where]
    if missing:
        raise InputError(f"no iteration up to HEAD ({workspace.head}) edited request(s) {', '.join(missing)}",
                         hint="ids are the records' case_id / id, or 'line N' of the facts file")
    first = min(where.values())
    keep = lambda s, r: r.request_id not in gone  # noqa: E731
    return _plan(workspace, forget_command(ids), first, list(ids), _replay(workspace, first, keep))


def run_revert(workspace: Workspace, plan: dict, progress: Progress | None = None, current=None) -> dict:
    """Carry out (or finish) ``plan``; returns {command, reverted, archived, archives, iterations
    (one per replayed batch: iteration, from, requests, replayed), head}."""
    from .edit import job_id, run_edit

    progress = progress or (lambda event, data: None)
    pending = workspace.pending_revert()
    if pending is not None and pending["command"] != plan["command"]:
        raise WorkspaceError(f"another revert is unfinished: {pending['command']}",
                             hint=f"finish it first: {pending['command']} (the same command resumes)")
    plan = pending or plan
    if pending is None:
        workspace.save_pending_revert(plan)  # before anything changes: a rerun finishes from here
    first = plan["reverted"]
    if not plan["archived"]:
        if workspace.head != first - 1:
            workspace.set_head(first - 1)
        moved, folder = workspace.archive_after(first - 1)
        plan = {**plan, "archived": True, "archives": plan["archives"] + ([str(folder)] if folder else [])}
        workspace.save_pending_revert(plan)
        progress("archived", {"iterations": moved, "folder": str(folder) if folder else None})
    report = {"command": plan["command"], "reverted": first, "archives": plan["archives"], "iterations": []}
    for j, batch in enumerate(plan["replay"]):
        t = first + j
        requests = [request_from_dict(r) for r in batch["requests"]]
        config = EditConfig.from_dict(batch["config"])
        ident = job_id(requests, config, len(requests))
        done = t in workspace.iterations() and workspace.record(t).get("job", {}).get("id") == ident
        entry = {"iteration": t, "from": batch["from"], "requests": len(requests), "replayed": not done}
        if done:
            if workspace.head < t:
                workspace.set_head(t)  # committed, then killed before HEAD moved
        elif workspace.head != t - 1:
            raise WorkspaceError(f"the replay of {plan['command']} expected HEAD {t - 1}, found {workspace.head}",
                                 hint="the workspace changed outside wdsp; `wdsp check` lists what it finds")
        else:
            progress("replay", {"iteration": t, "from": batch["from"], "requests": len(requests),
                                "of": len(plan["replay"])})
            if current is None:  # one model for the whole replay, advanced by each edit
                from ..workspace.checkout import checkout, load_base

                current = checkout(workspace, t - 1, base=load_base(workspace))
            run_edit(workspace, requests, config, len(requests), resume=False, current=current,
                     source=f"replay of iteration {batch['from']} ({plan['command']})")
        report["iterations"].append(entry)
    workspace.clear_pending_revert()
    report["head"] = workspace.head
    return report


def estimated_seconds(plan: dict) -> float:
    """The replay's edit time as its iterations took it (their records), scaled by the requests kept."""
    return sum(batch["seconds"] for batch in plan["replay"])
