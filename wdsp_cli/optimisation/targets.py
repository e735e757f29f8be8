"""Target-value optimisation (MEMIT's ``compute_z``), batched over the requests of a batch.

Public API:
    EditPrompts, build_edit_prompts(tokenizer, requests, context_templates, kl_prompt, groups=None)
    shared_key_groups(requests) -> [group per request]   requests that share a key share one delta
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
(lr = v_lr) runs for at most ``v_num_grad_steps`` forward passes, or the request's own number
(``optimise_residuals``' ``steps``), so at most steps - 1 updates; after each update delta_p,i
is projected onto ||delta|| <= clamp * ||h_p,i||;
request i stops as soon as L_i < early_stop_loss, or (``most_probable_steps`` = k, ENCORE's
most-probable early stopping) at the forward where, for the (k+1)-th time, every one of its target
tokens on every one of its prompts is the top-1 prediction (counted, not necessarily in a row).

The B problems are independent (delta_i only enters request i's prompts and the loss
is a sum over requests), so one forward/backward over all rows with a [B, d] delta,
a row-wise Adam and per-row stopping equals B separate runs; converged requests leave
the batch, and logits are computed only where targets are scored.

What no delta reaches runs once per call (delta_free.py): the tokens before the lookup
position (``settings.prefix_cache``: their key/values are kept and each step feeds only the
tokens from the lookup position on, with their true position ids; a model whose decoder returns
no plain full-attention ``DynamicCache`` is fed whole rows instead) and the blocks below the
first edited point (``settings.frozen_blocks``: stood in for by their recorded output). Every
step builds a fresh cache object for the active rows, so it neither grows nor keeps converged
requests.

Each step runs forward and backward over at most ``settings.requests_per_pass`` requests at a
time (near-equal chunks), so the autograd graph, and the peak memory, does not grow with B.

Rows are fed in groups of similar length (one padded batch per group, groups chosen to
minimise padding plus a per-call cost), since padding would otherwise be about half of the
fed suffix tokens. On CPU, attention runs through SDPA's math backend (faster here in
float32 and much faster in bfloat16's backward). ``settings.autocast_dtype`` (e.g.
torch.bfloat16) runs the model under ``torch.autocast``; deltas, Adam state, log-softmax
and losses stay float32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..data.requests import EditRequest
from ..errors import EditError, InputError
from ..model.hooks import hooks
from .frozen import DeltaFree, precompute
from .prompts import TokenRows, fill, length_groups, pad_rows, subject_last_token

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
# Requests whose prompts go through one forward/backward at a time: bounds the autograd graph
# (benchmarks/perf.py measures the peak RSS at B = 50 on SmolLM2).
DEFAULT_REQUESTS_PER_PASS = 20


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


def shared_key_groups(requests: Sequence[EditRequest]) -> list[int]:
    """Group index of each request, numbered by first appearance: requests with the same subject and
    the same prompt text before it have the same key in every context template (the key is read at
    the subject's last token), so a linear update can send that key to one value only; they are
    optimised as one, with one delta for the sum of their losses."""
    first: dict[tuple[str, str], int] = {}
    return [first.setdefault((r.subject, r.prompt.split("{}")[0]), len(first)) for r in requests]


def build_edit_prompts(tokenizer, requests: Sequence[EditRequest], context_templates: Sequence[str],
                       kl_prompt: str = "{} is a", groups: Sequence[int] | None = None) -> EditPrompts:
    """The rows of every request; with ``groups`` (``shared_key_groups``), the rows of a group's
    requests belong to one optimised "request" (one delta, one bare and one essence row, the
    first member's) and each member's NLL weighs 1 / group size: NLL_g = mean of its members'."""
    groups = list(range(len(requests))) if groups is None else list(groups)
    sizes = {g: groups.count(g) for g in set(groups)}
    rows, row_request, lookup = [], [], []
    t_row, t_pos, t_tok, t_w = [], [], [], []
    kl_row, kl_pos, bare_row = [], [], []
    for request, g in zip(requests, groups):
        first = g == len(kl_row)  # groups are numbered by first appearance
        target = target_token_ids(tokenizer, request.target_new)
        weight = 1.0 / (len(target) * len(context_templates) * sizes[g])
        for j, template in enumerate(context_templates):
            text, span = fill(template, request.prompt, request.subject)
            ids, index = subject_last_token(tokenizer, text, span)
            if j == 0 and first:
                bare_row.append(len(rows))
            for k, token in enumerate(target):
                t_row.append(len(rows))
                t_pos.append(len(ids) - 1 + k)
                t_tok.append(token)
                t_w.append(weight)
            rows.append(ids + target[:-1])
            row_request.append(g)
            lookup.append(index)
        if not first:
            continue
        text, span = fill("{}", kl_prompt, request.subject)
        ids, index = subject_last_token(tokenizer, text, span)
        kl_row.append(len(rows))
        kl_pos.append(len(ids) - 1)
        rows.append(ids)
        row_request.append(g)
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
    autocast_dtype: torch.dtype | None = None  # run the model under torch.autocast (a dtype or its name)
    prefix_cache: bool = True  # reuse the key/value cache of the tokens before the lookup position
    requests_per_pass: int = DEFAULT_REQUESTS_PER_PASS  # forward/backward chunk (0: the whole batch)
    frozen_blocks: bool = True  # run the blocks below the first edited point once (delta_free.py)
    most_probable_steps: int | None = None  # MPES: also stop k forwards after the targets are top-1

    def __post_init__(self):
        object.__setattr__(self, "autocast_dtype", _parse_dtype(self.autocast_dtype))
        if self.requests_per_pass < 0:
            raise InputError(f"requests per pass must be >= 0, not {self.requests_per_pass}",
                             hint="give a positive number, or 0 for the whole batch at once")

    @classmethod
    def from_config(cls, config, requests_per_pass: int | None = None) -> OptimisationSettings:
        """Settings of an EditConfig; ``requests_per_pass`` (None: the default) only sets memory."""
        return cls(config.v_lr, config.v_num_grad_steps, config.clamp_norm_factor, config.kl_factor,
                   config.v_weight_decay, config.early_stop_loss,
                   autocast_dtype=config.autocast_dtype,
                   most_probable_steps=config.most_probable_steps if config.early_stop == "most-probable" else None,
                   requests_per_pass=DEFAULT_REQUESTS_PER_PASS if requests_per_pass is None else requests_per_pass)


def _parse_dtype(value) -> torch.dtype | None:
    """None, a torch dtype, or a name such as "bfloat16", "torch.bfloat16", "bf16", "none"."""
    if value is None or isinstance(value, torch.dtype):
        return value
    key = str(value).strip().lower().removeprefix("torch.")
    if key in ("", "none"):
        return None
    dtype = getattr(torch, {"bf16": "bfloat16", "fp16": "float16", "half": "float16"}.get(key, key), None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise InputError(f"unknown autocast dtype {value!r}", hint="use bfloat16, float16 or none")
    return dtype


class Regulariser(Protocol):
    """``extra_loss(deltas, inits, nll, step, requests) -> [b]`` added to each request's loss
    (e.g. ``regularisers.wasserstein.WassersteinRegulariser``).

    deltas/inits: point -> [b, d] for the requests in the current sub-batch; nll [b];
    requests [b]: their (ascending) indices in the batch, which only shrinks between steps.
    ``counts_for_stopping``: whether the term is part of the early-stopping test.
    """

    counts_for_stopping: bool

    def __call__(self, deltas: dict[str, torch.Tensor], inits: dict[str, torch.Tensor], nll: torch.Tensor,
                 step: int, requests: torch.Tensor) -> torch.Tensor: ...


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

    def expanded(self, groups: Sequence[int]) -> ResidualResult:
        """One row per request from one row per group (``shared_key_groups``): members share theirs."""
        index = torch.tensor(list(groups), dtype=torch.long)
        at = lambda t: t[index.to(t.device)]  # noqa: E731
        return ResidualResult(self.points, {p: at(v) for p, v in self.init.items()},
                              {p: at(v) for p, v in self.delta.items()}, at(self.updates), at(self.loss), at(self.nll))


def _decoder_and_head(model):
    return model.base_model, model.get_output_embeddings()


@contextlib.contextmanager
def _precision(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast(dtype)`` unless dtype is None; on CPU, SDPA through its math backend
    (for these short rows it is as fast in float32 and much faster in bfloat16's backward)."""
    with contextlib.ExitStack() as stack:
        if dtype is not None:
            stack.enter_context(torch.autocast(device.type, dtype=dtype))
        if device.type == "cpu":
            stack.enter_context(sdpa_kernel(SDPBackend.MATH))
        yield


@dataclass(frozen=True)
class _Feed:
    """What every step feeds the decoder, fixed for one ``optimise_residuals`` call (on device).

    Row s is fed from position ``free.start[s]`` on: its lookup position with the prefix cache,
    else 0; ``input_ids`` [S, W] (right-padded) and ``lengths`` are the fed tokens, and ``lookup``,
    ``target_pos`` [N] and ``kl_pos`` [B] are in fed coordinates. ``free``: the prefix key/values
    and frozen blocks' output, computed once (delta_free.py).
    """

    input_ids: torch.Tensor
    lengths: torch.Tensor
    lookup: torch.Tensor
    target_pos: torch.Tensor
    kl_pos: torch.Tensor
    free: DeltaFree
    config: object
    autocast_dtype: torch.dtype | None

    def inputs(self, rows: torch.Tensor) -> dict:
        """Decoder keyword arguments for ``rows`` (sorted, on device)."""
        lengths, start = self.lengths[rows], self.free.start[rows]
        steps = torch.arange(int(lengths.max()), device=rows.device)
        mask = steps < lengths[:, None]
        inputs = dict(input_ids=self.input_ids[rows, : len(steps)], position_ids=start[:, None] + steps,
                      use_cache=False)
        cache = self.free.prefix.cache(rows, self.config) if self.free.prefix is not None else None
        if cache is not None:
            held = cache.get_seq_length()
            inputs.update(use_cache=True, cache=cache)
            mask = torch.cat([torch.arange(held, device=rows.device) < start[:, None], mask], dim=1)
        inputs["attention_mask"] = mask.long()
        return inputs


def _make_feed(model, prompts: EditPrompts, prefix_cache: bool = True,
               autocast_dtype: torch.dtype | None = None, frozen_points: Sequence[str] = ()) -> _Feed:
    """The feed of one optimisation; ``frozen_points``: the edited points, whose lower blocks
    then run once per row (none: every block runs at every step)."""
    device = next(model.parameters()).device
    ids, lengths = prompts.rows.input_ids.to(device), prompts.rows.lengths.to(device)
    lookup = prompts.lookup.to(device)
    free = precompute(model, ids, lengths, lookup, frozen_points, prefix_cache,
                      lambda: _precision(device, autocast_dtype))
    start = free.start
    cols = start[:, None] + torch.arange(free.width, device=device)
    return _Feed(
        input_ids=ids.gather(1, cols.clamp_max(ids.shape[1] - 1)), lengths=lengths - start,
        lookup=lookup - start, target_pos=prompts.target_pos.to(device) - start[prompts.target_row.to(device)],
        kl_pos=prompts.kl_pos.to(device) - start[prompts.kl_row.to(device)], free=free, config=model.config,
        autocast_dtype=autocast_dtype,
    )


def _sub_prompts(prompts: EditPrompts, requests: torch.Tensor):
    """Rows of ``requests`` only; returns (rows, local request index, row map)."""
    keep = torch.isin(prompts.row_request, requests)
    rows = keep.nonzero().squeeze(1)
    local = torch.full((prompts.num_requests,), -1, dtype=torch.long)
    local[requests] = torch.arange(len(requests))
    row_map = torch.full((prompts.row_request.shape[0],), -1, dtype=torch.long)
    row_map[rows] = torch.arange(len(rows))
    return rows, local, row_map


def _editor(delta: torch.Tensor, req: torch.Tensor, lookup: torch.Tensor, capture=None):
    """Edit fn adding ``delta[req[r]]`` at (r, lookup[r]) of each fed row r; with ``capture =
    (rows, requests, store)`` it first stores the unedited values of ``rows`` at ``store[requests]``."""
    def edit(out: torch.Tensor) -> torch.Tensor:  # ``out`` may sit on another device (device maps)
        here = lookup.to(out.device)
        if capture is not None:
            rows, requests, store = capture
            rows = rows.to(out.device)
            store[requests] = out[rows, here[rows]].detach().float().to(store.device)
        index = (torch.arange(len(req), device=out.device), here)
        return out.index_put(index, delta[req].to(out.device, out.dtype), accumulate=True)
    return edit


def forward_losses(model, prompts: EditPrompts, requests: torch.Tensor, deltas: dict[str, torch.Tensor],
                   kl_init: torch.Tensor | None, capture_init: bool = False, feed: _Feed | None = None):
    """One forward pass over the rows of ``requests`` (sorted [b]) with ``deltas[p]`` [b, d].

    ``feed`` (from ``_make_feed``, built once per optimisation) sets the prefix cache and
    autocast; by default whole rows in the model's dtype. Rows are fed in groups of similar length.
    Returns (nll [b], kl_logprobs [b, V], kl [b] or None, init values point -> [b, d] or {},
    most_probable [b]: whether every target token of the request, on every one of its prompts, is
    the model's top-1 prediction there).
    """
    device = next(model.parameters()).device
    feed = feed if feed is not None else _make_feed(model, prompts, prefix_cache=False)
    rows, local, row_map = _sub_prompts(prompts, requests)
    rows, row_req = rows.to(device), local[prompts.row_request[rows]].to(device)
    bare = torch.zeros(len(rows), dtype=torch.bool, device=device)
    bare[row_map[prompts.bare_row[requests]].to(device)] = True
    # the scored (row, fed position)s: every target token, then each request's KL position
    t_sel = torch.isin(prompts.target_row, rows.cpu())
    s_row = torch.cat([row_map[prompts.target_row[t_sel]], row_map[prompts.kl_row[requests]]]).to(device)
    s_pos = torch.cat([feed.target_pos[t_sel.to(device)], feed.kl_pos[requests.to(device)]])
    dim = model.get_output_embeddings().weight.shape[1]
    init = {p: torch.zeros(len(requests), dim, device=device) for p in deltas} if capture_init else {}
    decoder, head = _decoder_and_head(model)
    picked, order = [], []
    for group in length_groups(feed.lengths[rows]):
        req, lookup = row_req[group], feed.lookup[rows[group]]
        b_rows = bare[group].nonzero().squeeze(1)
        edits = {p: _editor(deltas[p], req, lookup, (b_rows, req[b_rows], init[p]) if capture_init else None)
                 for p in deltas}
        inputs = feed.inputs(rows[group])
        with (feed.free.stand_ins(rows[group], inputs["input_ids"].shape[1]), hooks(model, edits=edits),
              _precision(device, feed.autocast_dtype)):
            hidden = decoder(**inputs).last_hidden_state
        in_group = torch.full((len(rows),), -1, dtype=torch.long, device=device)
        in_group[group] = torch.arange(len(group), device=device)
        mine = (in_group[s_row] >= 0).nonzero().squeeze(1)
        picked.append(hidden[in_group[s_row[mine]].to(hidden.device), s_pos[mine].to(hidden.device)])
        order.append(mine)
    # logits only where they are scored (on the head's device; losses come back to ``device``)
    with _precision(device, feed.autocast_dtype):
        chosen = torch.cat(picked)
        logits = head(chosen[torch.argsort(torch.cat(order)).to(chosen.device)])
    logp = torch.log_softmax(logits.float(), dim=-1)
    here = logp.device
    n_targets = int(t_sel.sum())
    token_logp = logp[:n_targets].gather(1, prompts.target_token[t_sel].to(here)[:, None]).squeeze(1)
    t_req = local[prompts.row_request[prompts.target_row[t_sel]]].to(here)
    weight = prompts.target_weight[t_sel].to(here)
    nll = torch.zeros(len(requests), device=here).index_add(0, t_req, -token_logp * weight).to(device)
    missed = (logp[:n_targets].argmax(-1) != prompts.target_token[t_sel].to(here)).float()
    most_probable = (torch.zeros(len(requests), device=here).index_add(0, t_req, missed) == 0).cpu()
    kl_logp = logp[n_targets:]
    kl = None
    if kl_init is not None:
        kl = (kl_logp.exp() * (kl_logp - kl_init.to(here))).sum(-1).to(device)
    return nll, kl_logp, kl, init, most_probable


def _clamp_rows(delta: torch.Tensor, init: torch.Tensor, factor: float) -> torch.Tensor:
    """Project each row onto ||delta_i|| <= factor * ||init_i||."""
    max_norm = factor * init.norm(dim=1, keepdim=True)
    norm = delta.norm(dim=1, keepdim=True)
    return torch.where(norm > max_norm, delta * (max_norm / norm.clamp_min(1e-30)), delta)


def _chunks(requests: torch.Tensor, size: int) -> list[torch.Tensor]:
    """The fewest consecutive slices of ``requests`` of at most ``size`` (0: one slice), of equal
    sizes give or take one: 50 at 16 gives 13, 13, 12, 12, not 16, 16, 16, 2 (a pass of 2 costs
    nearly as much fixed work as one of 16)."""
    if size <= 0 or len(requests) <= size:
        return [requests]
    return list(requests.tensor_split(-(-len(requests) // size)))


def optimise_residuals(model, prompts: EditPrompts, points: Sequence[str], settings: OptimisationSettings,
                       extra_loss: Regulariser | None = None,
                       on_step: Callable[[int, int], None] | None = None,
                       steps: torch.Tensor | None = None) -> ResidualResult:
    """Optimise delta_p,i for all requests at once (see module docstring). Model weights are
    not changed; gradients flow only to the deltas. ``on_step(step, still_active)`` is called
    after each forward pass (step = 1..max steps).

    ``steps`` [B]: each request's forward passes at most (default: ``settings.v_num_grad_steps``
    for all). A request's optimisation does not depend on the others', so a request with more
    steps changes nothing for the rest: they stop where they would have.

    Each step runs forward and backward over at most ``settings.requests_per_pass`` requests at
    a time, so the autograd graph held at once, and the peak memory, does not grow with B. The
    losses are per request, so their gradients (accumulated in the leaves) equal one pass's. The
    extra loss needs only the deltas, h and the NLL: it runs once per step on all active requests.
    The last chunk's backward waits for the stopping test (no wasted backward when B fits one).
    """
    device = next(model.parameters()).device
    n = prompts.num_requests
    dim = model.get_output_embeddings().weight.shape[1]
    delta = {p: torch.zeros(n, dim, device=device) for p in points}
    m = {p: torch.zeros_like(delta[p]) for p in points}
    v = {p: torch.zeros_like(delta[p]) for p in points}
    active = torch.ones(n, dtype=torch.bool)
    updates = torch.zeros(n, dtype=torch.long)
    probable = torch.zeros(n, dtype=torch.long)  # forwards at which all of a request's targets were top-1
    final_loss = torch.zeros(n)
    final_nll = torch.zeros(n)
    init = {p: torch.zeros(n, dim, device=device) for p in points}
    kl_init = None
    feed = _make_feed(model, prompts, settings.prefix_cache, settings.autocast_dtype,
                      frozen_points=points if settings.frozen_blocks else ())
    b1, b2 = ADAM_BETAS
    budget = torch.full((n,), settings.v_num_grad_steps, dtype=torch.long) if steps is None else steps.long().cpu()
    if budget.shape != (n,) or bool((budget < 1).any()):
        raise ValueError(f"steps must be [{n}] values >= 1, got {tuple(budget.shape)}")
    last = int(budget.max()) - 1
    for step in range(last + 1):
        requests = active.nonzero().squeeze(1)
        index = requests.to(device)
        leaves = {p: delta[p][requests].clone().requires_grad_(True) for p in points}
        nll = torch.zeros(len(requests), device=device)
        loss = torch.zeros(len(requests), device=device)
        top = torch.zeros(len(requests), dtype=torch.bool)
        chunks, pending, at = _chunks(requests, settings.requests_per_pass), [], 0
        for k, chunk in enumerate(chunks):
            span = slice(at, at + len(chunk))
            at += len(chunk)
            with torch.set_grad_enabled(step < last):  # the last step takes no update
                sub = {p: leaves[p][span] for p in points}
                if step == 0:
                    # delta = 0: read the original values h and P_0; KL(P_0 || P_0) = 0 with zero gradient.
                    c_nll, kl_logp, _, c_init, c_top = forward_losses(model, prompts, chunk, sub, None, True, feed)
                    if kl_init is None:
                        kl_init = kl_logp.new_zeros(n, kl_logp.shape[1])
                    kl_init[chunk.to(kl_init.device)] = kl_logp.detach()
                    for p in points:
                        init[p][chunk.to(device)] = c_init[p]
                    c_kl = torch.zeros_like(c_nll)
                else:
                    c_nll, _, c_kl, _, c_top = forward_losses(model, prompts, chunk, sub,
                                                              kl_init[chunk.to(kl_init.device)], feed=feed)
                decay = sum(sub[p].norm(dim=1) / init[p][chunk.to(device)].norm(dim=1).pow(2) for p in points)
                c_loss = c_nll + settings.kl_factor * c_kl + settings.v_weight_decay * decay
            if k == len(chunks) - 1:
                pending.append(c_loss)  # its backward waits for the stopping test
            elif c_loss.requires_grad and torch.isfinite(c_loss).all():
                c_loss.sum().backward()  # frees this chunk's graph; gradients accumulate in ``leaves``
            nll[span], loss[span] = c_nll.detach(), c_loss.detach()
            top[span] = c_top
        stop_loss = loss
        if extra_loss is not None:
            with torch.set_grad_enabled(step < last):
                extra = extra_loss(leaves, {p: init[p][index] for p in points}, nll, step, requests)
            pending.append(extra)
            loss = loss + extra.detach()
            stop_loss = loss if extra_loss.counts_for_stopping else stop_loss
        if not torch.isfinite(loss).all():
            raise EditError("the target-value optimisation produced a non-finite loss",
                            hint="lower v_lr or check the model's dtype (try float32)")
        final_loss[requests] = loss.cpu()
        final_nll[requests] = nll.cpu()
        done = (stop_loss < settings.early_stop_loss).cpu() | (budget[requests] <= step + 1)  # its last forward
        if settings.most_probable_steps is not None:  # ENCORE's MPES: k steps after the targets are top-1
            probable[requests] += top.long()
            done |= probable[requests] > settings.most_probable_steps
        active[requests[done]] = False
        if on_step is not None:
            on_step(step + 1, int(active.sum()))
        if step == last or bool(done.all()):
            break
        sum(t.sum() for t in pending if t.requires_grad).backward()
        keep = (~done).nonzero().squeeze(1)
        live = requests[keep]
        live_d = live.to(device)
        t = step + 1
        for p in points:
            g = leaves[p].grad[keep.to(device)]
            m[p][live_d] = b1 * m[p][live_d] + (1 - b1) * g
            v[p][live_d] = b2 * v[p][live_d] + (1 - b2) * g * g
            denom = (v[p][live_d].sqrt() / (1 - b2**t) ** 0.5) + ADAM_EPS
            stepped = delta[p][live_d] - (settings.v_lr / (1 - b1**t)) * m[p][live_d] / denom
            delta[p][live_d] = _clamp_rows(stepped, init[p][live_d], settings.clamp_norm_factor)
        updates[live] += 1
    return ResidualResult(tuple(points), init, delta, updates, final_loss, final_nll)
