"""Evaluating a workspace's iteration: its own requests, and every request edited so far.

Public API:
    run_evaluate(workspace, iteration=None, retention=True, current=None, health=True, sample=None)
        -> dict (also stored)
    measure(current, latest, edited=None, sample=None, health=None) -> dict   the same figures, unstored
    retention_sample(edited, size) -> list     the fixed random sample retention uses when ``sample``
    in_force(edited) -> edited                 without the requests a later request replaced (same fact)

``latest``: the metrics of iteration t's requests on the model at t; ``all``: of the requests of
iterations 1..t (retention: do earlier edits survive later ones?) that are still in force (a fact
edited again counts once, with its latest target), or of a fixed random sample of
them (``sample``; ``all`` then says ``edited`` and ``sample``). Metrics: CounterFact's when
every request has an old target, token accuracy otherwise (``evaluation.evaluate_requests``),
plus ``locality_base``: the % of neighbour prompts whose greedy next token at t is the base
model's (does the edit change what the model said before?), whatever the datasets' gold answers.
``health`` (``health=True``), on a held-out sample chosen once per workspace (health-sample.json:
the last ``HEALTH_TEXTS`` texts of the built-in corpus, which statistics of up to about 45k of its
tokens never read, and their first words as unrelated prompts):
    perplexity, perplexity_ratio     on the held-out texts, and its ratio to the base model's
    locality_prompts                 % of the unrelated prompts whose greedy next token is the base's
    drift {module: {relative_frobenius, spectral_ratio}} of every matrix edited so far, and their
    max_relative_frobenius, max_spectral_ratio  (evaluation.health)
The document is stored as evaluations/<t>.json.
"""

from __future__ import annotations

import time

from ..errors import InputError, WorkspaceError
from ..workspace.store import Workspace, now

HEALTH_TEXTS = 64  # about 4k tokens of held-out text
HEALTH_PROMPT_WORDS = 8


def health_sample(workspace: Workspace, current) -> dict:
    """The workspace's health sample, chosen (and the base model's figures computed) on first use."""
    stored = workspace.health_sample()
    if stored is not None:
        return stored
    from ..data.corpus import builtin_corpus
    from ..evaluation.health import perplexity
    from ..evaluation.scoring import next_token_predictions

    corpus = builtin_corpus()
    texts = list(corpus.texts())[-HEALTH_TEXTS:]
    prompts = [" ".join(t.split()[:HEALTH_PROMPT_WORDS]) for t in texts]
    with current.state.original_weights():
        ppl, tokens = perplexity(current.model, current.tokenizer, texts)
        said = next_token_predictions(current.model, current.tokenizer, prompts).tolist()
    document = {"source": {**corpus.identity, "texts": f"the last {HEALTH_TEXTS}"}, "texts": texts, "prompts": prompts,
                "base": {"perplexity": ppl, "tokens": tokens, "next_tokens": said}, "chosen_at": now()}
    workspace.save_health_sample(document)
    return document


def model_health(current, sample: dict) -> dict:
    """The health figures of the model ``current`` holds (see the module docstring)."""
    import torch

    from ..evaluation.health import perplexity, weight_drift
    from ..evaluation.scoring import next_token_predictions
    from ..model.architectures import module_by_name, weight_out_in

    ppl, _ = perplexity(current.model, current.tokenizer, sample["texts"])
    said = next_token_predictions(current.model, current.tokenizer, sample["prompts"])
    same = 100.0 * float((said == torch.tensor(sample["base"]["next_tokens"])).float().mean())
    drift = {}
    for module, original in sorted(current.state.original.items()):
        drift[module] = weight_drift(weight_out_in(module_by_name(current.model, module)), original)
    return {"perplexity": ppl, "perplexity_ratio": ppl / sample["base"]["perplexity"], "locality_prompts": same,
            "drift": drift,
            "max_relative_frobenius": max((d["relative_frobenius"] for d in drift.values()), default=0.0),
            "max_spectral_ratio": max((d["spectral_ratio"] for d in drift.values()), default=1.0)}


def in_force(edited: list[list]) -> list[list]:
    """``edited`` (requests per iteration 1..t) without the requests a later one replaced: the same
    subject and prompt (``data.conflicts.fact_key``) edited again, later in the batch or after it.
    Retention measures the facts that should hold now, not the ones changed since."""
    from ..data.conflicts import fact_key

    later: set = set()
    kept = []
    for batch in reversed(edited):
        out = []
        for request in reversed(batch):
            key = fact_key(request)
            if key not in later:
                out.append(request)
                later.add(key)
        kept.append(out[::-1])
    return kept[::-1]


def retention_sample(edited: list[list], size: int | None) -> list:
    """A fixed random sample of ``size`` of the requests ``edited[s - 1]`` of iterations s = 1..t
    (all of them when ``size`` is None or covers them): the ``size`` requests whose
    sha256("<iteration>:<index in its batch>") is smallest, in edit order. A request's rank never
    changes, so the sample at a later t keeps every earlier member that still ranks in the first ``size``."""
    import hashlib

    tagged = [(s, i, r) for s, batch in enumerate(edited, start=1) for i, r in enumerate(batch)]
    if size is None or size >= len(tagged):
        return [r for _, _, r in tagged]
    rank = lambda item: hashlib.sha256(f"{item[0]}:{item[1]}".encode()).digest()  # noqa: E731
    chosen = sorted(sorted(tagged, key=rank)[:size], key=lambda item: item[:2])
    return [r for _, _, r in chosen]


def measure(current, latest: list, edited: list[list] | None = None, sample: int | None = None,
            health: dict | None = None) -> dict:
    """The figures of the model ``current`` holds: ``latest`` (its last batch's requests), with
    ``edited`` (the requests of iterations 1..t, ``latest`` last) retention over all of them or a
    fixed random ``sample`` (>= 1, checked by the callers before any model work), with ``health`` (a
    ``health_sample``) the health figures. Stores nothing:
    ``run_evaluate`` stores it, ``wdsp edit --gate`` checks it before HEAD moves."""
    from ..evaluation.scoring import (
        evaluate_requests,
        neighbour_prompts,
        next_token_predictions,
    )

    def metrics(requests) -> dict:
        prompts = neighbour_prompts(requests)
        with current.state.original_weights():
            before = next_token_predictions(current.model, current.tokenizer, prompts)
        after = next_token_predictions(current.model, current.tokenizer, prompts)
        same = 100.0 * float((before == after).float().mean()) if prompts else float("nan")
        return {"requests": len(requests), **evaluate_requests(current.model, current.tokenizer, requests),
                "locality_base": same}

    document = {"latest": metrics(latest)}
    if edited is not None:
        edited = in_force(edited)
        chosen = retention_sample(edited, sample)
        total = sum(map(len, edited))
        scope = {"iterations": len(edited), "edited": total, "sample": sample if len(chosen) < total else None}
        whole = len(edited) == 1 and len(chosen) == total
        document["all"] = {**scope, **(document["latest"] if whole else metrics(chosen))}
    if health is not None:
        document["health"] = model_health(current, health)
    return document


def run_evaluate(workspace: Workspace, iteration: int | None = None, retention: bool = True,
                 current=None, health: bool = True, sample: int | None = None) -> dict:
    """Evaluate iteration ``iteration`` (default HEAD) and store it. ``current``: a
    ``checkout.Checkout`` already at that iteration (the benchmark keeps one loaded), else the model
    is loaded. ``health``: add the health figures (module docstring). ``sample``: retention over a
    fixed random sample of that many of the requests edited so far (``retention_sample``), not all."""
    from ..workspace.checkout import checkout

    t = workspace.head if iteration is None else iteration
    if t == 0:
        raise WorkspaceError("there is nothing to evaluate at iteration 0 (no edits yet)",
                             hint="edit first: wdsp edit FACTS.jsonl")
    workspace.check_iteration(t)
    if sample is not None and sample < 1:
        raise InputError(f"--retention-sample {sample}: a sample needs at least 1 request",
                         hint="leave it out to evaluate every request edited so far")
    clock = time.perf_counter()
    latest = workspace.requests(t)
    if current is None:
        current = checkout(workspace, t)
    elif current.iteration != t:
        raise ValueError(f"the checkout is at iteration {current.iteration}, not {t}")
    edited = [latest if s == t else workspace.requests(s) for s in range(1, t + 1)] if retention else None
    figures = measure(current, latest, edited, sample, health_sample(workspace, current) if health else None)
    document = {"iteration": t, "evaluated_at": now(), **figures, "seconds": round(time.perf_counter() - clock, 2)}
    workspace.save_evaluation(t, document)
    return document
