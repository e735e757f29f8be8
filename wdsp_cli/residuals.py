"""Target-value optimisation (MEMIT's ``compute_z``), batched over the requests of a batch.

Public API:
    EditPrompts, build_edit_prompts(tokenizer, requests, context_templates, kl_prompt)
    OptimisationSettings (from an EditConfig)
    ResidualResult, optimise_residuals(model, prompts, points, settings, extra_loss=None)
    Regulariser  protocol of ``extra_loss`` (the WD hook)

For request i a vector delta_{p,i} in R^d is added at the subject's last token to the
output of module p (MEMIT: the z-layer block, i.e. the residual stream h; PMET: the
z-layer attention and MLP output projections) in every prompt of that request:
``template.format(prompt.format(subject)) + target[:-1]`` for each context template,
and the essence prompt "{subject} is a". Per request (method.md section 1, step 2):

    L_i = NLL_i + kl_factor * KL(P_delta || P_0) + v_weight_decay * sum_p ||delta_p,i|| / ||h_p,i||^2
          (+ extra_loss_i, e.g. the WD term)

NLL_i is the mean over prompts of the summed target-token NLL divided by the target
length; KL is taken on the next-token distribution after "{subject} is a". Adam
(lr = v_lr) runs for at most ``v_num_grad_steps`` forward passes (so at most steps - 1
updates); after each update delta_p,i is projected onto ||delta|| <= clamp * ||h_p,i||;
request i stops as soon as L_i < early_stop_loss.

The B problems are independent (delta_i only enters request i's prompts and the loss
is a sum over requests), so one forward/backward over all rows with a [B, d] delta,
a row-wise Adam and per-row stopping equals B separate runs; converged requests leave
the batch, and logits are computed only where targets are scored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .errors import EditError, InputError
from .hooks import hooks
from .prompts import TokenRows, fill, pad_rows, subject_last_token
from .requests import EditRequest

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


@dataclass(frozen=True)
class EditPrompts:
    """Tokenized prompts of B requests (S rows, N scored target tokens).

    rows            right-padded token rows [S, T]: per request its rewrite rows (one per
                    context template, bare "{}" first), then its essence (KL) row
    row_request     [S] request index of each row
    lookup          [S] position of the subject's last token in each row
    target_row, target_pos, target_token, target_weight   [N] each scored target token:
                    its row, the position whose logits predict it, its id, and the weight
                    1 / (len(target) * n_templates), so NLL_i = sum_w w * -log p
    kl_row, kl_pos  [B] the essence row of each request and its last position
    bare_row        [B] the bare-template rewrite row of each request (h is read there)
    """

    rows: TokenRows
    row_request: torch.Tensor
    lookup: torch.Tensor
    target_row: torch.Tensor
    target_pos: torch.Tensor
    target_token: torch.Tensor
    target_weight: torch.Tensor
    kl_row: torch.Tensor
    kl_pos: torch.Tensor
    bare_row: torch.Tensor

    @property
    def num_requests(self) -> int:
        return int(self.kl_row.shape[0])


def target_token_ids(tokenizer, target: str) -> list[int]:
    """Token ids of " " + target, without special tokens."""
    ids = tokenizer(" " + target.strip(), add_special_tokens=False).input_ids
    if not ids:
        raise InputError(f"target {target!r} has no tokens", hint="give a non-empty target")
    return list(ids)


def build_edit_prompts(tokenizer, requests: Sequence[EditRequest], context_templates: Sequence[str],
                       kl_prompt: str = "{} is a") -> EditPrompts:
    rows, row_request, lookup = [], [], []
    t_row, t_pos, t_tok, t_w = [], [], [], []
    kl_row, kl_pos, bare_row = [], [], []
    for i, request in enumerate(requests):
        target = target_token_ids(tokenizer, request.target_new)
        weight = 1.0 / (len(target) * len(context_templates))
        for j, template in enumerate(context_templates):
            text, span = fill(template, request.prompt, request.subject)
            ids, index = subject_last_token(tokenizer, text, span)
            if j == 0:
                bare_row.append(len(rows))
            for k, token in enumerate(target):
                t_row.append(len(rows))
                t_pos.append(len(ids) - 1 + k)
                t_tok.append(token)
                t_w.append(weight)
            rows.append(ids + target[:-1])
            row_request.append(i)
            lookup.append(index)
        text, span = fill("{}", kl_prompt, request.subject)
        ids, index = subject_last_token(tokenizer, text, span)
        kl_row.append(len(rows))
        kl_pos.append(len(ids) - 1)
        rows.append(ids)
        row_request.append(i)
        lookup.append(index)
    long = lambda xs: torch.tensor(xs, dtype=torch.long)  # noqa: E731
    return EditPrompts(
        rows=pad_rows(rows, tokenizer.pad_token_id), row_request=long(row_request), lookup=long(lookup),
        target_row=long(t_row), target_pos=long(t_pos), target_token=long(t_tok),
        target_weight=torch.tensor(t_w, dtype=torch.float32), kl_row=long(kl_row), kl_pos=long(kl_pos),
        bare_row=long(bare_row),
    )


@dataclass(frozen=True)
class OptimisationSettings:
    v_lr: float
    v_num_grad_steps: int
    clamp_norm_factor: float
    kl_factor: float
    v_weight_decay: float
    early_stop_loss: float = 5e-2

    @classmethod
    def from_config(cls, config) -> OptimisationSettings:
        return cls(config.v_lr, config.v_num_grad_steps, config.clamp_norm_factor, config.kl_factor,
                   config.v_weight_decay, config.early_stop_loss)


class Regulariser:
    """``extra_loss(deltas, inits, nll, step) -> [b]`` added to each request's loss.

    deltas/inits: point -> [b, d] for the requests in the current sub-batch; nll [b].
    ``counts_for_stopping``: whether the term is part of the early-stopping test.
    """

    counts_for_stopping: bool = True

    def __call__(self, deltas: dict[str, torch.Tensor], inits: dict[str, torch.Tensor], nll: torch.Tensor,
                 step: int) -> torch.Tensor:  # pragma: no cover - protocol
        raise NotImplementedError


@dataclass
class ResidualResult:
    """Per point p: ``init[p]`` [B, d] (the value before editing) and ``delta[p]`` [B, d];
    per request: ``updates`` (Adam steps taken), ``loss`` and ``nll`` at the last forward."""

    points: tuple[str, ...]
    init: dict[str, torch.Tensor]
    delta: dict[str, torch.Tensor]
    updates: torch.Tensor
    loss: torch.Tensor
    nll: torch.Tensor

    def target(self, point: str) -> torch.Tensor:
        """z = init + delta at ``point``, [B, d]."""
        return self.init[point] + self.delta[point]


def _decoder_and_head(model):
    return model.base_model, model.get_output_embeddings()


def _sub_prompts(prompts: EditPrompts, requests: torch.Tensor):
    """Rows of ``requests`` only; returns (rows, row_request (local), lookup, target mask, row map)."""
    keep = torch.isin(prompts.row_request, requests)
    rows = keep.nonzero().squeeze(1)
    local = torch.full((prompts.num_requests,), -1, dtype=torch.long)
    local[requests] = torch.arange(len(requests))
    row_map = torch.full((prompts.row_request.shape[0],), -1, dtype=torch.long)
    row_map[rows] = torch.arange(len(rows))
    return rows, local, row_map


def forward_losses(model, prompts: EditPrompts, requests: torch.Tensor, deltas: dict[str, torch.Tensor],
                   kl_init: torch.Tensor | None, capture_init: bool = False):
    """One forward pass over the rows of ``requests`` (sorted [b]) with ``deltas[p]`` [b, d].

    Returns (nll [b], kl_logprobs [b, V], kl [b] or None, init values point -> [b, d] or {}).
    """
    rows, local, row_map = _sub_prompts(prompts, requests)
    batch = prompts.rows.select(rows)
    device = next(model.parameters()).device
    row_req = local[prompts.row_request[rows]].to(device)
    lookup = prompts.lookup[rows].to(device)
    row_index = torch.arange(len(rows), device=device)
    bare = row_map[prompts.bare_row[requests]].to(device)
    init: dict[str, torch.Tensor] = {}

    def editor(point):
        def edit(out: torch.Tensor) -> torch.Tensor:
            if capture_init:
                init[point] = out[bare, lookup[bare]].detach().float()
            add = deltas[point][row_req].to(out.dtype)
            return out.index_put((row_index, lookup), add, accumulate=True)
        return edit

    decoder, head = _decoder_and_head(model)
    with hooks(model, edits={p: editor(p) for p in deltas}):
        hidden = decoder(input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device),
                         use_cache=False).last_hidden_state
    t_sel = torch.isin(prompts.target_row, rows)
    t_rows = row_map[prompts.target_row[t_sel]].to(device)
    t_pos = prompts.target_pos[t_sel].to(device)
    logp = torch.log_softmax(head(hidden[t_rows, t_pos]).float(), dim=-1)
    token_logp = logp.gather(1, prompts.target_token[t_sel].to(device)[:, None]).squeeze(1)
    t_req = local[prompts.row_request[prompts.target_row[t_sel]]].to(device)
    weight = prompts.target_weight[t_sel].to(device)
    nll = torch.zeros(len(requests), device=device).index_add(0, t_req, -token_logp * weight)
    k_rows = row_map[prompts.kl_row[requests]].to(device)
    kl_logp = torch.log_softmax(head(hidden[k_rows, prompts.kl_pos[requests].to(device)]).float(), dim=-1)
    kl = None
    if kl_init is not None:
        kl = (kl_logp.exp() * (kl_logp - kl_init)).sum(-1)
    return nll, kl_logp, kl, init


def _clamp_rows(delta: torch.Tensor, init: torch.Tensor, factor: float) -> torch.Tensor:
    """Project each row onto ||delta_i|| <= factor * ||init_i||."""
    max_norm = factor * init.norm(dim=1, keepdim=True)
    norm = delta.norm(dim=1, keepdim=True)
    return torch.where(norm > max_norm, delta * (max_norm / norm.clamp_min(1e-30)), delta)


def optimise_residuals(model, prompts: EditPrompts, points: Sequence[str], settings: OptimisationSettings,
                       extra_loss: Regulariser | None = None) -> ResidualResult:
    """Optimise delta_p,i for all requests at once (see module docstring). Model weights are
    not changed; gradients flow only to the deltas."""
    device = next(model.parameters()).device
    n = prompts.num_requests
    dim = model.get_output_embeddings().weight.shape[1]
    delta = {p: torch.zeros(n, dim, device=device) for p in points}
    m = {p: torch.zeros_like(delta[p]) for p in points}
    v = {p: torch.zeros_like(delta[p]) for p in points}
    active = torch.ones(n, dtype=torch.bool)
    updates = torch.zeros(n, dtype=torch.long)
    final_loss = torch.zeros(n)
    final_nll = torch.zeros(n)
    init: dict[str, torch.Tensor] = {}
    kl_init = None
    b1, b2 = ADAM_BETAS
    for step in range(settings.v_num_grad_steps):
        requests = active.nonzero().squeeze(1)
        leaves = {p: delta[p][requests].clone().requires_grad_(True) for p in points}
        with torch.enable_grad():
            if step == 0:
                # delta = 0: read the original values h and P_0; KL(P_0 || P_0) = 0 with zero gradient.
                nll, kl_logp, _, init = forward_losses(model, prompts, requests, leaves, None, capture_init=True)
                kl_init = kl_logp.detach()
                kl = torch.zeros(n, device=device)
            else:
                nll, _, kl, _ = forward_losses(model, prompts, requests, leaves, kl_init[requests.to(device)])
            sub_init = {p: init[p][requests.to(device)] for p in points}
            decay = sum(leaves[p].norm(dim=1) / sub_init[p].norm(dim=1).pow(2) for p in points)
            loss = nll + settings.kl_factor * kl + settings.v_weight_decay * decay
            stop_loss = loss
            if extra_loss is not None:
                extra = extra_loss(leaves, sub_init, nll, step)
                loss = loss + extra
                stop_loss = loss if extra_loss.counts_for_stopping else stop_loss
        if not torch.isfinite(loss).all():
            raise EditError("the target-value optimisation produced a non-finite loss",
                            hint="lower v_lr or check the model's dtype (try float32)")
        final_loss[requests] = loss.detach().cpu()
        final_nll[requests] = nll.detach().cpu()
        done = (stop_loss.detach() < settings.early_stop_loss).cpu()
        active[requests[done]] = False
        if step == settings.v_num_grad_steps - 1 or bool(done.all()):
            break
        keep = (~done).nonzero().squeeze(1)
        grads = torch.autograd.grad(loss[keep.to(device)].sum(), [leaves[p] for p in points])
        live = requests[keep]
        t = step + 1
        for p, g in zip(points, grads):
            g = g[keep.to(device)]
            live_d = live.to(device)
            m[p][live_d] = b1 * m[p][live_d] + (1 - b1) * g
            v[p][live_d] = b2 * v[p][live_d] + (1 - b2) * g * g
            denom = (v[p][live_d].sqrt() / (1 - b2**t) ** 0.5) + ADAM_EPS
            stepped = delta[p][live_d] - (settings.v_lr / (1 - b1**t)) * m[p][live_d] / denom
            delta[p][live_d] = _clamp_rows(stepped, init[p][live_d], settings.clamp_norm_factor)
        updates[live] += 1
    return ResidualResult(tuple(points), {p: init[p] for p in points}, delta, updates, final_loss, final_nll)
