"""Prompt lengths against the model's context: refuse a request that cannot fit, before any model work.

Public API:
    request_texts(request) -> [(what, text)]     every text an edit or its evaluation feeds the model
    check_prompt_lengths(requests, tokenizer, context, prefix_tokens) -> None   InputError if one is too long

A request's texts are its prompt (subject filled in) followed by its new target (and by its old
target, where given), each paraphrase followed by the new target, and each neighbour prompt
followed by its answer. The edit puts a context template before each (MEMIT's "<sampled text>.
{}"), so a text must fit in ``context - prefix_tokens`` tokens, special tokens included.

Only texts that might be too long are tokenized: no tokenizer this package supports makes more
tokens than ``2 * utf8_bytes + 8`` of a text (a token covers at least one byte; the slack covers
special tokens and normalisers that expand characters), so a text under that bound is passed
without tokenizing it, and checking 20,000 CounterFact records costs milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import InputError
from .requests import EditRequest


def request_texts(request: EditRequest) -> list[tuple[str, str]]:
    """(what, text) for each text of ``request`` that is fed to the model."""
    prompt = request.rewrite_prompt
    texts = [("prompt + target", f"{prompt} {request.target_new}")]
    if request.target_true is not None:
        texts.append(("prompt + old target", f"{prompt} {request.target_true}"))
    texts += [(f"paraphrase {i + 1} + target", f"{p} {request.target_new}") for i, p in enumerate(request.paraphrases)]
    texts += [(f"neighbour {i + 1} + answer", f"{n.prompt} {n.answer}") for i, n in enumerate(request.neighbours)]
    return texts


def _token_bound(text: str) -> int:
    return 2 * len(text.encode("utf-8")) + 8


def check_prompt_lengths(requests: Sequence[EditRequest], tokenizer, context: int, prefix_tokens: int = 0) -> None:
    """InputError naming the first request (its ``source``, path:line) one of whose texts takes
    more than ``context - prefix_tokens`` tokens, with how many requests are too long in all."""
    room = context - prefix_tokens
    suspects = [(r, what, text) for r in requests for what, text in request_texts(r) if _token_bound(text) > room]
    if not suspects:
        return
    counts = tokenizer([text for _, _, text in suspects])["input_ids"]
    too_long = [(r, what, len(ids)) for (r, what, _), ids in zip(suspects, counts) if len(ids) > room]
    if not too_long:
        return
    request, what, tokens = too_long[0]
    others = len({id(r) for r, _, _ in too_long}) - 1
    where = request.source or request.request_id or "a request"
    raise InputError(
        f"{where}: the {what} is {tokens} tokens, but the model reads at most {context} "
        f"({prefix_tokens} of them go to the context template in front of it)"
        + (f"; {others} more request(s) are too long too" if others else ""),
        hint=f"shorten that record to under {room} tokens, or leave it out (--offset/--limit, or delete its line)",
    )
