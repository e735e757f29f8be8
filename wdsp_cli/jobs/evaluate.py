"""Evaluating a workspace's iteration: its own requests, and every request edited so far.

Public API:
    run_evaluate(workspace, iteration=None, retention=True, current=None) -> dict (also stored)

``latest``: the metrics of iteration t's requests on the model at t; ``all``: of the requests of
iterations 1..t (retention: do earlier edits survive later ones?). Metrics: CounterFact's when
every request has an old target, token accuracy otherwise (``evaluation.evaluate_requests``),
plus ``locality_base``: the % of neighbour prompts whose greedy next token at t is the base
model's (does the edit change what the model said before?), whatever the datasets' gold answers.
The document is stored as evaluations/<t>.json.
"""

from __future__ import annotations

import time

from ..errors import WorkspaceError
from ..workspace.store import Workspace, now


def run_evaluate(workspace: Workspace, iteration: int | None = None, retention: bool = True,
                 current=None) -> dict:
    """Evaluate iteration ``iteration`` (default HEAD). ``current``: a ``checkout.Checkout``
    already at that iteration (the benchmark keeps one loaded), else the model is loaded."""
    from ..evaluation.scoring import (
        evaluate_requests,
        neighbour_prompts,
        next_token_predictions,
    )
    from ..workspace.checkout import checkout

    t = workspace.head if iteration is None else iteration
    if t == 0:
        raise WorkspaceError("there is nothing to evaluate at iteration 0 (no edits yet)",
                             hint="edit first: wdsp edit FACTS.jsonl")
    workspace.check_iteration(t)
    clock = time.perf_counter()
    latest = workspace.requests(t)
    everything = [r for s in range(1, t + 1) for r in (latest if s == t else workspace.requests(s))] \
        if retention else latest
    if current is None:
        current = checkout(workspace, t)
    elif current.iteration != t:
        raise ValueError(f"the checkout is at iteration {current.iteration}, not {t}")
    with current.state.original_weights():
        said_before = next_token_predictions(current.model, current.tokenizer, neighbour_prompts(everything))
    said_now = next_token_predictions(current.model, current.tokenizer, neighbour_prompts(everything))

    def metrics(requests) -> dict:
        n = len(neighbour_prompts(requests))  # ``requests`` is a prefix or suffix of ``everything``
        before, now_ = (said_before[-n:], said_now[-n:]) if n else (said_before[:0], said_now[:0])
        same = 100.0 * float((before == now_).float().mean()) if n else float("nan")
        return {"requests": len(requests), **evaluate_requests(current.model, current.tokenizer, requests),
                "locality_base": same}

    document = {"iteration": t, "evaluated_at": now(), "latest": metrics(latest)}
    if retention:
        document["all"] = {"iterations": t, **(document["latest"] if t == 1 else metrics(everything))}
    document["seconds"] = round(time.perf_counter() - clock, 2)
    workspace.save_evaluation(t, document)
    return document
