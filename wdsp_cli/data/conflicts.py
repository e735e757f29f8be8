"""Facts that meet earlier facts: requests that change a fact edited before, or that share a subject
with another request of their batch. Pure Python (no torch): it runs before any model work.

A request's *fact key* is (normalised subject, normalised prompt template). ``normalise`` applies
Unicode NFC, then ``str.casefold``, then collapses every run of whitespace to one space and strips
the ends, so "The capital of  {} is" and "the capital of {} is " are one key; punctuation and the
rest of the text count ("{} is located in" and "{}, located in" are two keys: paraphrased
templates of one relation are not recognised, the requests carry no relation id). Targets are
compared normalised the same way.

Two kinds of conflict, over the new requests split into batches of ``batch_size`` (in file order,
as ``wdsp edit`` splits them):

``changes-again``   a new request whose fact key equals that of an earlier request: one committed
                    in iterations 1..HEAD, or one of an earlier batch of the same new requests
                    (it will be committed first). It is reported against the latest such request
                    (the one in force when the new batch is edited), with every earlier iteration
                    that set the key. Severity ``duplicate`` when the target is the same again
                    (harmless but wasteful), ``new-target`` when it differs (A->B, then A->C).
``same-batch``      two or more requests of one batch with the same normalised subject, as one
                    group. Severity ``contradiction`` when two of them also share the prompt and
                    differ in target (the batch asks for two answers to one question),
                    ``duplicate`` when they share the prompt and the target, else ``same-subject``
                    (several facts about one subject solved together).

Public API
    ``normalise(text) -> str``                      the comparison form of a subject, prompt or target.
    ``fact_key(request) -> (subject, prompt)``      normalised.
    ``RequestRef``                                  where a request is: id, source, iteration, batch.
    ``Conflict``                                    one finding; ``.to_dict()`` for JSON.
    ``ConflictReport``                              all findings and what was checked; ``.to_dict()``,
                                                    ``.count(kind=None, severity=None)``, ``.summary()``.
    ``find_conflicts(requests, batch_size, committed=(), *, first_iteration=None, first_batch=1,
    unreadable=()) -> ConflictReport``
    ``replaced_targets(earlier, batch) -> [str | None]``  per request of ``batch``, the target in
                                                    force that it changes, if any.
    ``KINDS``, ``SEVERITIES``                        the names used in ``Conflict.kind`` / ``.severity``.
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..errors import InputError
from .requests import EditRequest

__all__ = ["KINDS", "SEVERITIES", "Conflict", "ConflictReport", "RequestRef", "fact_key", "find_conflicts",
           "normalise", "replaced_targets"]

CHANGES_AGAIN = "changes-again"
SAME_BATCH = "same-batch"
KINDS: tuple[str, ...] = (CHANGES_AGAIN, SAME_BATCH)

NEW_TARGET = "new-target"
DUPLICATE = "duplicate"
CONTRADICTION = "contradiction"
SAME_SUBJECT = "same-subject"
#: Strongest first: a same-batch group takes the strongest that applies.
SEVERITIES: tuple[str, ...] = (CONTRADICTION, NEW_TARGET, DUPLICATE, SAME_SUBJECT)

NORMALISATION = "Unicode NFC, case-folded, whitespace runs collapsed to one space, ends stripped"


def normalise(text: str) -> str:
    """``text`` as conflicts compare it: NFC, case-folded, whitespace collapsed and stripped."""
    return " ".join(unicodedata.normalize("NFC", text).casefold().split())


def fact_key(request: EditRequest) -> tuple[str, str]:
    """(normalised subject, normalised prompt template): requests with equal keys set one fact."""
    return normalise(request.subject), normalise(request.prompt)


def replaced_targets(earlier: Iterable[EditRequest], batch: Sequence[EditRequest]) -> list[str | None]:
    """For each request of ``batch``, the target in force for its fact key (set by the latest of the
    ``earlier`` requests, oldest first, with that key) when it differs from the request's own
    (normalised): the fact the request changes (A -> B, then A -> C replaces B). None for most."""
    wanted = {fact_key(r) for r in batch}
    in_force = {fact_key(r): r.target_new for r in earlier if fact_key(r) in wanted}
    out = []
    for r in batch:
        old = in_force.get(fact_key(r))
        out.append(old if old is not None and normalise(old) != normalise(r.target_new) else None)
    return out


@dataclass(frozen=True)
class RequestRef:
    """A request and where it is: ``iteration`` is the committed one, or for a new request the one
    it will become if the edit starts at ``first_iteration``; ``batch`` is the 1-based batch of the
    new requests (None for a committed request); ``committed`` tells which of the two it is."""

    request: EditRequest
    iteration: int
    committed: bool
    batch: int | None = None

    def to_dict(self) -> dict:
        r = self.request
        return {"request_id": r.request_id, "source": r.source, "iteration": self.iteration,
                "committed": self.committed, "batch": self.batch, "subject": r.subject, "prompt": r.prompt,
                "target_new": r.target_new, "target_true": r.target_true}


@dataclass(frozen=True)
class Conflict:
    """One finding. ``requests``: for ``changes-again`` (the earlier request, the new one); for
    ``same-batch`` the group, in file order. ``subject``/``prompt``: the normalised key (``prompt``
    None for a same-batch group whose prompts differ). ``earlier_iterations``: changes-again only,
    every iteration (committed, or planned for an earlier new batch) that set the key before."""

    kind: str
    severity: str
    subject: str
    prompt: str | None
    requests: tuple[RequestRef, ...]
    earlier_iterations: tuple[int, ...] = ()

    @property
    def batch(self) -> int | None:
        """The 1-based batch of the (last) new request involved."""
        return self.requests[-1].batch

    @property
    def iteration(self) -> int:
        """The iteration the (last) new request will become."""
        return self.requests[-1].iteration

    def to_dict(self) -> dict:
        """JSON types: kind, severity, subject, prompt, batch, iteration, requests; changes-again adds
        earlier, request, old_target, new_target, earlier_iterations; same-batch adds prompts (each
        normalised prompt of the group with its request ids and targets)."""
        out = {"kind": self.kind, "severity": self.severity, "subject": self.subject, "prompt": self.prompt,
               "batch": self.batch, "iteration": self.iteration, "requests": [r.to_dict() for r in self.requests]}
        if self.kind == CHANGES_AGAIN:
            earlier, new = self.requests
            out.update(earlier=earlier.to_dict(), request=new.to_dict(), old_target=earlier.request.target_new,
                       new_target=new.request.target_new, earlier_iterations=list(self.earlier_iterations))
        else:
            by_prompt: dict[str, list[RequestRef]] = defaultdict(list)
            for ref in self.requests:
                by_prompt[normalise(ref.request.prompt)].append(ref)
            out["prompts"] = [{"prompt": p, "request_ids": [r.request.request_id for r in refs],
                               "targets": [r.request.target_new for r in refs]} for p, refs in by_prompt.items()]
        return out

    def describe(self) -> str:
        """One line for a human: what meets what."""
        if self.kind == CHANGES_AGAIN:
            earlier, new = self.requests
            where = f"iteration {earlier.iteration}" if earlier.committed else f"batch {earlier.batch} of this file"
            what = "the same target again" if self.severity == DUPLICATE else \
                f"{earlier.request.target_new!r} -> {new.request.target_new!r}"
            return (f"{new.request.request_id} ({new.request.rewrite_prompt!r}) changes the fact set by "
                    f"{earlier.request.request_id} in {where}: {what}")
        ids = ", ".join(r.request.request_id for r in self.requests)
        return f"batch {self.batch}: {len(self.requests)} requests about {self.requests[0].request.subject!r} ({ids})"


@dataclass(frozen=True)
class ConflictReport:
    """What ``find_conflicts`` found and what it checked: ``requests`` new requests in ``batches``
    batches of ``batch_size``, the first to become iteration ``first_iteration``, against
    ``committed_requests`` requests of ``committed_iterations``; ``unreadable``: committed iterations
    whose requests could not be read (not checked)."""

    conflicts: tuple[Conflict, ...]
    requests: int
    batches: int
    batch_size: int
    first_iteration: int
    committed_iterations: tuple[int, ...] = ()
    committed_requests: int = 0
    unreadable: tuple[int, ...] = field(default=())

    def count(self, kind: str | None = None, severity: str | None = None) -> int:
        return sum(1 for c in self.conflicts if kind in (None, c.kind) and severity in (None, c.severity))

    def counts(self) -> dict[str, dict[str, int]]:
        """kind -> severity -> number of conflicts (every kind and its severities, zeros included)."""
        severities = {CHANGES_AGAIN: (NEW_TARGET, DUPLICATE), SAME_BATCH: (CONTRADICTION, DUPLICATE, SAME_SUBJECT)}
        return {k: {s: self.count(k, s) for s in severities[k]} for k in KINDS}

    def summary(self) -> str:
        """One sentence: how many of each, or that there are none."""
        if not self.conflicts:
            return "no conflicts"
        counts, parts = self.counts(), []
        again = counts[CHANGES_AGAIN]
        if sum(again.values()):
            parts.append(f"{sum(again.values())} request(s) change a fact edited before "
                         f"({again[NEW_TARGET]} to a new target, {again[DUPLICATE]} to the same target again)")
        same = counts[SAME_BATCH]
        if sum(same.values()):
            parts.append(f"{sum(same.values())} group(s) of requests about one subject in one batch "
                         f"({same[CONTRADICTION]} contradiction(s), {same[DUPLICATE]} duplicate(s), "
                         f"{same[SAME_SUBJECT]} with different prompts)")
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return {"count": len(self.conflicts), "counts": self.counts(), "requests": self.requests,
                "batches": self.batches, "batch_size": self.batch_size, "first_iteration": self.first_iteration,
                "checked_against": {"iterations": list(self.committed_iterations),
                                    "requests": self.committed_requests},
                "unreadable_iterations": list(self.unreadable), "normalisation": NORMALISATION,
                "conflicts": [c.to_dict() for c in self.conflicts]}


def _same_batch_severity(group: Sequence[RequestRef]) -> str:
    targets: dict[str, set[str]] = defaultdict(set)
    sizes: dict[str, int] = defaultdict(int)
    for ref in group:
        prompt = normalise(ref.request.prompt)
        targets[prompt].add(normalise(ref.request.target_new))
        sizes[prompt] += 1
    if any(len(t) > 1 for t in targets.values()):
        return CONTRADICTION
    return DUPLICATE if any(n > 1 for n in sizes.values()) else SAME_SUBJECT


def find_conflicts(requests: Sequence[EditRequest], batch_size: int,
                   committed: Iterable[tuple[int, Sequence[EditRequest]]] = (), *,
                   first_iteration: int | None = None, first_batch: int = 1,
                   unreadable: Iterable[int] = ()) -> ConflictReport:
    """The conflicts of ``requests`` (split into batches ``requests[i*B:(i+1)*B]``) with
    ``committed`` — (iteration, its requests) for iterations 1..HEAD, in any order — and among
    themselves (module docstring). ``first_iteration``: the iteration the first new batch becomes
    (default: one past the last committed); ``first_batch``: the 1-based number of the first batch
    (a resumed job's remaining batches start later). Conflicts come in batch order: per batch, the
    changes-again ones in request order, then the same-batch groups in order of their first request.
    Raises ``InputError`` for a batch size under 1."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size!r}", hint="e.g. --batch-size 20")
    history = sorted(((int(t), list(rs)) for t, rs in committed), key=lambda item: item[0])
    if first_iteration is None:
        first_iteration = history[-1][0] + 1 if history else 1
    earlier: dict[tuple[str, str], list[RequestRef]] = defaultdict(list)
    for t, batch_requests in history:
        for r in batch_requests:
            earlier[fact_key(r)].append(RequestRef(r, t, committed=True))
    conflicts: list[Conflict] = []
    batches = [requests[i : i + batch_size] for i in range(0, len(requests), batch_size)]
    for index, batch in enumerate(batches):
        iteration, number = first_iteration + index, first_batch + index
        refs = [RequestRef(r, iteration, committed=False, batch=number) for r in batch]
        for ref in refs:
            key = fact_key(ref.request)
            if before := earlier.get(key):
                last = before[-1]
                same = normalise(last.request.target_new) == normalise(ref.request.target_new)
                conflicts.append(Conflict(CHANGES_AGAIN, DUPLICATE if same else NEW_TARGET, key[0], key[1],
                                          (last, ref), tuple(dict.fromkeys(e.iteration for e in before))))
        groups: dict[str, list[RequestRef]] = defaultdict(list)
        for ref in refs:
            groups[normalise(ref.request.subject)].append(ref)
        for subject, group in groups.items():
            if len(group) > 1:
                prompts = {normalise(g.request.prompt) for g in group}
                conflicts.append(Conflict(SAME_BATCH, _same_batch_severity(group), subject,
                                          prompts.pop() if len(prompts) == 1 else None, tuple(group)))
        for ref in refs:  # in force for the later batches
            earlier[fact_key(ref.request)].append(ref)
    return ConflictReport(tuple(conflicts), len(requests), len(batches), batch_size, first_iteration,
                          tuple(t for t, _ in history), sum(len(rs) for _, rs in history),
                          tuple(sorted(set(unreadable))))
