"""The state and history of a workspace, read from disk only (no model is loaded).

Public API:
    workspace_status(workspace) -> dict

The document's ``problems`` are the cheap checks of ``check.quick_problems`` (HEAD past the
last iteration, missing, empty or truncated files); ``wdsp check`` reads every file.
"""

from __future__ import annotations

import json

from ..errors import WorkspaceError
from ..workspace.store import Workspace
from .check import quick_problems


def workspace_status(workspace: Workspace) -> dict:
    """Model, HEAD, statistics and every committed iteration (with its diff size against the
    dense update's, and its latest evaluation if any); iterations after HEAD are marked."""
    head = workspace.head
    iterations = []
    for t in workspace.iterations():
        try:
            record = workspace.record(t)
        except WorkspaceError:  # listed in problems
            record = {}
        config = record.get("config", {})
        summary = record.get("summary", {})
        try:
            evaluation = workspace.evaluation(t)
        except WorkspaceError:
            evaluation = None
        iterations.append({
            "iteration": t, "created_at": record.get("created_at"), "method": config.get("method"),
            "wd": bool(config.get("wd")), "sp": bool(config.get("sp")), "requests": summary.get("requests"),
            "diff_bytes": record.get("diff_bytes"), "dense_bytes": summary.get("dense_bytes"),
            "seconds": summary.get("seconds"), "source": record.get("job", {}).get("source"),
            "after_head": t > head,
            "score": evaluation["latest"].get("score") if evaluation else None,
            "perplexity_ratio": (evaluation or {}).get("health", {}).get("perplexity_ratio"),
        })
    statistics = []
    for layer in workspace.statistics_layers():
        meta = workspace.statistics_metadata(layer) or {}
        corpus = json.loads(meta.get("corpus", "{}") or "{}")
        statistics.append({"layer": layer, "tokens": int(meta.get("token_count", 0)),
                           "corpus": corpus.get("kind"), "created_at": meta.get("created_at")})
    problems = quick_problems(workspace)
    try:
        config = workspace.config()
    except WorkspaceError as exc:
        config = None
        if not any(p["file"] == "config.json" for p in problems):
            problems.append({"file": "config.json", "problem": exc.message, "repair": exc.hint})
    return {"workspace": str(workspace.root), "schema_version": workspace.info["schema_version"],
            "model": workspace.model, "head": head, "iterations": iterations, "statistics": statistics,
            "archived_sets": workspace.archived_sets(),
            "rejected": sorted(p.name for p in (workspace.root / "rejected").glob("*-iteration-*") if p.is_dir()),
            "pending_revert": (workspace.pending_revert() or {}).get("command"),
            "config": config.to_dict() if config else None, "problems": problems}
