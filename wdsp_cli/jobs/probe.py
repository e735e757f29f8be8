"""A quick look at what the model says: top next tokens and a greedy continuation, per iteration.

Public API:
    run_probe(workspace, prompt, iterations, top=5, max_new_tokens=20) -> dict

The model is loaded once and moved forward through the asked iterations in ascending order
(base + diffs 1..t each time, never subtracting), so comparing the base model (0) with the
current one costs one load.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import InputError
from ..workspace.store import Workspace


@torch.no_grad()
def next_tokens(model, tokenizer, prompt: str, top: int, max_new_tokens: int) -> dict:
    device = next(model.parameters()).device
    ids = tokenizer(prompt, return_tensors="pt").input_ids.to(device)
    probs = torch.softmax(model(input_ids=ids).logits[0, -1].float(), dim=-1)
    p, idx = probs.topk(min(top, probs.numel()))
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None
                         else tokenizer.eos_token_id)
    return {"top": [{"token": tokenizer.decode([int(i)]), "probability": float(q)} for q, i in zip(p, idx)],
            "continuation": tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)}


def run_probe(workspace: Workspace, prompt: str, iterations: Sequence[int], top: int = 5,
              max_new_tokens: int = 20) -> dict:
    from ..workspace.checkout import checkout

    if not prompt.strip():
        raise InputError("the prompt is empty", hint='give the start of a sentence, e.g. "The capital of France is"')
    if top < 1 or max_new_tokens < 0:
        raise InputError("--top must be >= 1 and --max-new-tokens >= 0", hint="e.g. --top 5 --max-new-tokens 20")
    order = sorted(set(iterations))
    for t in order:
        workspace.check_iteration(t)
    current = checkout(workspace, 0)
    results = {}
    for t in order:
        current.advance_to(workspace, t)
        results[t] = next_tokens(current.model, current.tokenizer, prompt, top, max_new_tokens)
    return {"prompt": prompt, "head": workspace.head,
            "results": [{"iteration": t, **results[t]} for t in iterations]}
