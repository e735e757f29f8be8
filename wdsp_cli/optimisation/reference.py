"""The straightforward per-request target-value optimisation, kept as test oracle and
benchmark reference (MEMIT's and EasyEdit's ``compute_z`` loop, written afresh).

Public API:
    optimise_residuals_reference(model, tokenizer, request, context_templates, points, settings)
        -> (init: point -> [d], delta: point -> [d], updates: int, loss: float, nll: float)
    optimise_each_request(model, tokenizer, requests, context_templates, points, settings, kl_prompt)
        -> ResidualResult   (the loop above over a batch: the benchmark's baseline)

One request at a time; full logits over whole prompts every step; ``torch.optim.Adam``
on a [d] vector; an in-place forward hook adds delta at the subject's last token. It
shares nothing with ``residuals.optimise_residuals`` but the prompt text conventions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..data.requests import EditRequest
from ..model.architectures import module_by_name
from .prompts import fill, subject_last_token
from .targets import OptimisationSettings, ResidualResult


def optimise_residuals_reference(model, tokenizer, request: EditRequest, context_templates: Sequence[str],
                                 points: Sequence[str], settings: OptimisationSettings,
                                 kl_prompt: str = "{} is a"):
    device = next(model.parameters()).device
    target = tokenizer(" " + request.target_new.strip(), add_special_tokens=False).input_ids
    texts, lookups, prompt_lens = [], [], []
    for template in context_templates:
        text, span = fill(template, request.prompt, request.subject)
        ids, index = subject_last_token(tokenizer, text, span)
        texts.append(ids + target[:-1])
        lookups.append(index)
        prompt_lens.append(len(ids))
    text, span = fill("{}", kl_prompt, request.subject)
    kl_ids, kl_index = subject_last_token(tokenizer, text, span)
    texts.append(kl_ids)
    lookups.append(kl_index)
    width = max(len(t) for t in texts)
    input_ids = torch.full((len(texts), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for i, t in enumerate(texts):
        input_ids[i, : len(t)] = torch.tensor(t)
        mask[i, : len(t)] = 1
    input_ids, mask = input_ids.to(device), mask.to(device)
    # labels[i, pos] = token predicted at pos, -100 elsewhere
    labels = torch.full_like(input_ids, -100)
    for i, n in enumerate(prompt_lens):
        for k, token in enumerate(target):
            labels[i, n - 1 + k] = token

    dim = model.get_output_embeddings().weight.shape[1]
    deltas = {p: torch.zeros(dim, device=device, requires_grad=True) for p in points}
    init: dict[str, torch.Tensor] = {}

    def make_hook(point):
        def hook(module, args, output):
            out = output[0] if isinstance(output, tuple) else output
            if point not in init:
                init[point] = out[0, lookups[0]].detach().clone().float()
            for i, idx in enumerate(lookups):
                out[i, idx] += deltas[point].to(out.dtype)
            return output
        return hook

    optimiser = torch.optim.Adam(list(deltas.values()), lr=settings.v_lr)
    kl_init = None
    updates, probable = 0, 0
    handles = [module_by_name(model, p).register_forward_hook(make_hook(p)) for p in points]
    try:
        for step in range(settings.v_num_grad_steps):
            optimiser.zero_grad()
            with torch.enable_grad():
                logits = model(input_ids=input_ids, attention_mask=mask, use_cache=False).logits.float()
                kl_logp = torch.log_softmax(logits[-1, len(kl_ids) - 1], dim=-1)
                if kl_init is None:
                    kl_init = kl_logp.detach().clone()
                logp = torch.log_softmax(logits[:-1], dim=-1)
                lab = labels[:-1]
                picked = logp.gather(2, lab.clamp_min(0)[..., None]).squeeze(2) * (lab != -100)
                nll = (-picked.sum(1) / len(target)).mean()
                kl = (kl_logp.exp() * (kl_logp - kl_init)).sum()
                decay = sum(deltas[p].norm() / init[p].norm() ** 2 for p in points)
                loss = nll + settings.kl_factor * kl + settings.v_weight_decay * decay
            final = (float(loss.detach()), float(nll.detach()))
            scored = lab != -100
            probable += bool((logp.argmax(-1)[scored] == lab[scored]).all())  # every target token top-1
            mpes = settings.most_probable_steps is not None and probable > settings.most_probable_steps
            if loss.item() < settings.early_stop_loss or mpes or step == settings.v_num_grad_steps - 1:
                break
            loss.backward()
            optimiser.step()
            updates += 1
            with torch.no_grad():
                for p in points:
                    max_norm = settings.clamp_norm_factor * init[p].norm()
                    if deltas[p].norm() > max_norm:
                        deltas[p].mul_(max_norm / deltas[p].norm())
    finally:
        for h in handles:
            h.remove()
    return init, {p: deltas[p].detach() for p in points}, updates, *final


def optimise_each_request(model, tokenizer, requests: Sequence[EditRequest], context_templates: Sequence[str],
                          points: Sequence[str], settings: OptimisationSettings,
                          kl_prompt: str = "{} is a") -> ResidualResult:
    """``optimise_residuals_reference`` for each request in turn, stacked as a ResidualResult."""
    inits, deltas, updates, losses, nlls = [], [], [], [], []
    for request in requests:
        init, delta, steps, loss, nll = optimise_residuals_reference(model, tokenizer, request, context_templates,
                                                                    points, settings, kl_prompt)
        inits.append(init)
        deltas.append(delta)
        updates.append(steps)
        losses.append(loss)
        nlls.append(nll)
    return ResidualResult(tuple(points), {p: torch.stack([i[p] for i in inits]) for p in points},
                          {p: torch.stack([d[p].float() for d in deltas]) for p in points},
                          torch.tensor(updates), torch.tensor(losses), torch.tensor(nlls))
