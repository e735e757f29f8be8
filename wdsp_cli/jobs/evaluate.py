"""Evaluating a workspace's iteration: its own requests, and every request edited so far.

Public API:
    run_evaluate(workspace, iteration=None, retention=True, base=None) -> dict (also stored)

``latest``: the metrics of iteration t's requests on the model at t; ``all``: of the requests of
iterations 1..t (retention: do earlier edits survive later ones?). Metrics: CounterFact's when
every request has an old target, token accuracy otherwise (``evaluation.evaluate_requests``).
The document is stored as evaluations/<t>.json.
"""

from __future__ import annotations

import time

from ..errors import WorkspaceError
from ..workspace import Workspace, now


def run_evaluate(workspace: Workspace, iteration: int | None = None, retention: bool = True, base=None) -> dict:
    from ..checkout import checkout
    from ..evaluation import evaluate_requests

    t = workspace.head if iteration is None else iteration
    if t == 0:
        raise WorkspaceError("there is nothing to evaluate at iteration 0 (no edits yet)",
                             hint="edit first: wdsp edit FACTS.jsonl")
    workspace.check_iteration(t)
    clock = time.perf_counter()
    current = checkout(workspace, t, base=base)
    latest = workspace.requests(t)
    document = {"iteration": t, "evaluated_at": now(), "latest": {"requests": len(latest),
                **evaluate_requests(current.model, current.tokenizer, latest)}}
    if retention:
        everything = [r for s in range(1, t + 1) for r in (latest if s == t else workspace.requests(s))]
        document["all"] = {"requests": len(everything), "iterations": t,
                           **(document["latest"] if t == 1 else
                              evaluate_requests(current.model, current.tokenizer, everything))}
    document["seconds"] = round(time.perf_counter() - clock, 2)
    workspace.save_evaluation(t, document)
    return document
