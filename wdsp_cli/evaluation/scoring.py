"""Batched scoring of a model on edit requests.

Public API:
    score_targets(model, tokenizer, prompts, targets, batch_size=64) -> (mean_nll [N], top1 [N])
    evaluate_counterfact(model, tokenizer, requests, batch_size=64) -> dict of metrics
    evaluate_accuracy(model, tokenizer, requests, batch_size=64) -> dict of metrics (zsRE protocol)
    evaluate_requests(model, tokenizer, requests, batch_size=64) -> the one of the two that applies
    next_token_predictions(model, tokenizer, prompts, batch_size=64) -> argmax next token ids [N]
    neighbour_prompts(requests) -> the locality prompts of ``requests``, in order

A pair (prompt, target) is scored teacher-forced on ``tokens(prompt) + tokens(" " + target)``
(the prompt with the tokenizer's special tokens, e.g. a BOS; the target without),
right-padded; logits only at the positions that predict target tokens.
mean_nll = mean over target tokens of -log p; top1 = fraction of target tokens that
are the argmax (the zsRE token accuracy).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..data.requests import EditRequest
from ..optimisation.prompts import pad_rows
from ..optimisation.targets import target_token_ids
from .metrics import counterfact_metrics, harmonic_mean


@torch.no_grad()
def score_targets(model, tokenizer, prompts: Sequence[str], targets: Sequence[str],
                  batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    device = next(model.parameters()).device
    decoder, head = model.base_model, model.get_output_embeddings()
    nll_out = torch.zeros(len(prompts))
    top1_out = torch.zeros(len(prompts))
    prompt_ids = [tokenizer(p).input_ids for p in prompts]
    target_ids = [target_token_ids(tokenizer, t) for t in targets]
    order = sorted(range(len(prompts)), key=lambda i: len(prompt_ids[i]) + len(target_ids[i]))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        batch = pad_rows([prompt_ids[i] + target_ids[i] for i in chunk], tokenizer.pad_token_id)
        hidden = decoder(input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device),
                         use_cache=False).last_hidden_state
        rows, pos, tok, owner = [], [], [], []
        for r, i in enumerate(chunk):
            n = len(prompt_ids[i])
            for k, t in enumerate(target_ids[i]):
                rows.append(r)
                pos.append(n - 1 + k)
                tok.append(t)
                owner.append(r)
        logits = head(hidden[torch.tensor(rows, device=hidden.device), torch.tensor(pos, device=hidden.device)]).float()
        logp = torch.log_softmax(logits, dim=-1)
        tok_t = torch.tensor(tok, device=logits.device)
        token_nll = -logp.gather(1, tok_t[:, None]).squeeze(1).cpu()
        hit = (logits.argmax(-1) == tok_t).float().cpu()
        owner_t = torch.tensor(owner)
        count = torch.zeros(len(chunk)).index_add(0, owner_t, torch.ones(len(owner)))
        nll_out[chunk] = torch.zeros(len(chunk)).index_add(0, owner_t, token_nll) / count
        top1_out[chunk] = torch.zeros(len(chunk)).index_add(0, owner_t, hit) / count
    return nll_out, top1_out


def evaluate_counterfact(model, tokenizer, requests: Sequence[EditRequest], batch_size: int = 64) -> dict:
    """ES/PS/NS (+ magnitudes, Score) for requests that carry ``target_true``."""
    prompts, targets = [], []
    groups = {"rewrite": [], "para": [], "neigh": []}  # (request, index of new-target pair)
    for i, r in enumerate(requests):
        if r.target_true is None:
            raise ValueError(f"request {r.request_id or i} has no target_true; CounterFact metrics need it")
        pairs = ([("rewrite", r.rewrite_prompt, r.target_true)] + [("para", p, r.target_true) for p in r.paraphrases]
                 + [("neigh", n.prompt, n.answer) for n in r.neighbours])
        for kind, text, old in pairs:
            groups[kind].append((i, len(prompts)))
            prompts += [text, text]
            targets += [r.target_new, old]
    nll, _ = score_targets(model, tokenizer, prompts, targets, batch_size)

    def split(kind):
        idx = torch.tensor([j for _, j in groups[kind]], dtype=torch.long)
        req = torch.tensor([i for i, _ in groups[kind]], dtype=torch.long)
        if idx.numel() == 0:
            return torch.zeros(0), torch.zeros(0), req
        return nll[idx], nll[idx + 1], req

    rw_new, rw_true, _ = split("rewrite")
    p_new, p_true, p_req = split("para")
    n_new, n_true, n_req = split("neigh")
    return counterfact_metrics(rw_new, rw_true, p_new, p_true, p_req, n_new, n_true, n_req)


def evaluate_accuracy(model, tokenizer, requests: Sequence[EditRequest], batch_size: int = 64) -> dict:
    """Token-level top-1 accuracy (%) of target_new on the rewrite prompts (efficacy) and the
    paraphrases (generalization), and of each neighbour's answer (locality); Score = their
    harmonic mean. Needs no ``target_true`` (the zsRE protocol)."""
    prompts, targets, kinds = [], [], []
    for r in requests:
        for kind, text, target in ([("efficacy", r.rewrite_prompt, r.target_new)]
                                   + [("generalization", p, r.target_new) for p in r.paraphrases]
                                   + [("locality", n.prompt, n.answer) for n in r.neighbours]):
            prompts.append(text)
            targets.append(target)
            kinds.append(kind)
    _, top1 = score_targets(model, tokenizer, prompts, targets, batch_size)
    out = {}
    for kind in ("efficacy", "generalization", "locality"):
        values = [float(a) for a, k in zip(top1, kinds) if k == kind]
        out[kind] = 100.0 * sum(values) / len(values) if values else float("nan")
    out["score"] = harmonic_mean([out["efficacy"], out["generalization"], out["locality"]])
    return out


def evaluate_requests(model, tokenizer, requests: Sequence[EditRequest], batch_size: int = 64) -> dict:
    """CounterFact metrics (``protocol`` "counterfact") when every request has ``target_true``,
    else token accuracy (``protocol`` "accuracy")."""
    if requests and all(r.target_true is not None for r in requests):
        return {"protocol": "counterfact", **evaluate_counterfact(model, tokenizer, requests, batch_size)}
    return {"protocol": "accuracy", **evaluate_accuracy(model, tokenizer, requests, batch_size)}


@torch.no_grad()
def next_token_predictions(model, tokenizer, prompts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
    """argmax_v p(v | prompt) for each prompt [N] (long): what the model says next, greedily.
    Right-padded batches; the logits are read at each prompt's last real token."""
    device = next(model.parameters()).device
    decoder, head = model.base_model, model.get_output_embeddings()
    ids = [tokenizer(p).input_ids for p in prompts]
    out = torch.zeros(len(prompts), dtype=torch.long)
    order = sorted(range(len(prompts)), key=lambda i: len(ids[i]))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        batch = pad_rows([ids[i] for i in chunk], tokenizer.pad_token_id)
        hidden = decoder(input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device),
                         use_cache=False).last_hidden_state
        last = torch.tensor([len(ids[i]) - 1 for i in chunk], device=hidden.device)
        logits = head(hidden[torch.arange(len(chunk), device=hidden.device), last])
        out[chunk] = logits.argmax(-1).cpu()
    return out


def neighbour_prompts(requests: Sequence[EditRequest]) -> list[str]:
    return [n.prompt for r in requests for n in r.neighbours]
