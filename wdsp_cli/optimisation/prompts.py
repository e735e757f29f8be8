"""Prompt construction and tokenization for editing: context templates, subject lookup.

Public API:
    generate_context_templates(model, tokenizer, count, length, seed) -> list[str]
    fill(template, prompt, subject) -> (text, subject_span)
    subject_last_token(tokenizer, text, span) -> (input_ids, index)
    TokenRows, pad_rows(rows, pad_id)  right-padded batches of token rows
    length_groups(lengths) -> [index tensors]  rows grouped by length, to be fed as padded batches

A context template is "{}" (bare) or a short model-generated text followed by ". {}"
(MEMIT): ``fill("The x. {}", "The mother tongue of {} is", "Danielle Darrieux")``.
Lookup index: the position of the subject's last token (MEMIT's ``subject_last``),
found through the tokenizer's offset mapping so it is exact at token boundaries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..errors import InputError

CONTEXT_PREFIXES = ("The", "Therefore", "Because", "I", "You")


def fill(template: str, prompt: str, subject: str) -> tuple[str, tuple[int, int]]:
    """``template`` with the request prompt in its "{}" and the subject in the prompt's,
    and the subject's character span [start, end) in the result."""
    text = template.replace("{}", prompt, 1)
    start = text.find("{}")
    if start < 0:
        raise InputError(f"prompt {prompt!r} has no '{{}}' slot for the subject",
                         hint='write the prompt as a template, e.g. "The capital of {} is"')
    return text[:start] + subject + text[start + 2 :], (start, start + len(subject))


def generate_context_templates(model, tokenizer, count: int = 5, length: int = 10, seed: int = 0) -> list[str]:
    """["{}"] + ``count`` sampled texts of ``length`` tokens (prefix included) + ". {}".

    Sampling is top-k 5 from the model under ``seed`` without touching the global RNG.
    Braces in generated text are blanked so the templates stay valid.
    """
    templates = ["{}"]
    if count <= 0:
        return templates
    prefixes = [CONTEXT_PREFIXES[i % len(CONTEXT_PREFIXES)] for i in range(count)]
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        for prefix in prefixes:
            ids = tokenizer(prefix, return_tensors="pt").input_ids.to(device)
            new = max(1, length - ids.shape[1])
            out = model.generate(
                ids, attention_mask=torch.ones_like(ids), do_sample=True, top_k=5, max_new_tokens=new,
                min_new_tokens=new, pad_token_id=tokenizer.pad_token_id,
            )
            text = tokenizer.decode(out[0], skip_special_tokens=True)
            text = text.replace("{", " ").replace("}", " ").replace("\n", " ").strip()
            templates.append(text + ". {}")
    return templates


def subject_last_token(tokenizer, text: str, span: tuple[int, int]) -> tuple[list[int], int]:
    """Token ids of ``text`` (the tokenizer's special tokens included) and the index of
    the last token that overlaps the subject's character ``span``."""
    start, end = span
    enc = tokenizer(text, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    index = None
    for i, (a, b) in enumerate(enc["offset_mapping"]):
        if b > a and a < end:
            index = i
    if index is None:
        raise InputError(f"cannot locate the subject {text[start:end]!r} in the tokens of {text!r}",
                         hint="use a fast tokenizer (offset mapping is needed)")
    return ids, index


@dataclass(frozen=True)
class TokenRows:
    """A right-padded batch: ``input_ids``/``attention_mask`` [S, T], ``lengths`` [S]."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    lengths: torch.Tensor


def pad_rows(rows: Sequence[Sequence[int]], pad_id: int) -> TokenRows:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return TokenRows(ids, mask, mask.sum(1))


# token slots that one more decoder call is taken to cost when rows are grouped by length
GROUP_CALL_COST = 64


def length_groups(lengths: torch.Tensor) -> list[torch.Tensor]:
    """Partition row indices into groups of similar length, each to be fed as its own padded
    batch, minimising sum(rows * longest) + GROUP_CALL_COST per group (rows are independent,
    so grouping changes nothing but padding)."""
    order = torch.argsort(lengths.cpu(), stable=True)
    values, counts = torch.unique_consecutive(lengths.cpu()[order], return_counts=True)
    values, ends = values.tolist(), counts.cumsum(0).tolist()
    # best[k]: cheapest cost of the rows of the k shortest lengths; cut[k]: where its last group starts
    best, cut = [0.0], [0]
    for k in range(1, len(values) + 1):
        costs = [best[j] + (ends[k - 1] - (ends[j - 1] if j else 0)) * values[k - 1] + GROUP_CALL_COST
                 for j in range(k)]
        cut.append(min(range(k), key=costs.__getitem__))
        best.append(costs[cut[-1]])
    groups, k = [], len(values)
    while k:
        j = cut[k]
        groups.append(order[(ends[j - 1] if j else 0): ends[k - 1]].to(lengths.device))
        k = j
    return groups[::-1]
