"""The part of the target optimisation's forward pass that no delta reaches, computed once.

Public API:
    first_changed_block(template, points) -> F   the lowest block whose output depends on a delta
    DeltaFree                                     what one ``precompute`` call recorded
    precompute(model, input_ids, lengths, lookup, points, prefix_cache, precision) -> DeltaFree

delta is added at each row's lookup position (the subject's last token), at the output of block
L (MEMIT: F = L + 1) or inside block L (PMET's attention and MLP outputs: F = L). Attention is
causal, so two parts of every step's forward pass never change:

  * the prefix: key/values of each row's tokens before its lookup position;
  * the frozen blocks 0..F-1, on every token.

One no-grad pass over the whole rows (in length groups) records both: h_{F-1} [S, W, d] of the
fed tokens (from the lookup position on) and the prefix key/values of blocks F and above, packed
without padding: per layer [P + 1, heads, head_dim] with P the sum of the prefix lengths (the last
entry zeros, for holes). Memory is thus proportional to the real prefix tokens, not to S times
the longest prefix, and blocks below F keep none. Each step feeds only the tokens from the lookup
on, with a fresh DynamicCache of its rows' prefixes, while blocks 0..F-1 are swapped for stand-ins
that cost nothing: the last returns the recorded h_{F-1}, so edit hooks on block F-1 and all
blocks above run as before. Every block keeps its index and name; the stood-in blocks' cache
entries are zeros of the prefix's shape (the decoder reads the prefix length from layer 0).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from ..model.architectures import ArchitectureTemplate, module_by_name, template_for
from ..model.hooks import hooks, run
from .prompts import length_groups

# rows per decoder call of the pass: its transient key/values and activations stay bounded as B grows
PRECOMPUTE_ROWS = 64


def first_changed_block(template: ArchitectureTemplate, points: Sequence[str]) -> int:
    """F: the lowest block whose output depends on a delta added at ``points``; a point at block
    L's output (``template.block_name(L)``) gives L + 1, a module inside block L gives L."""
    before, after = template.block.split("{}")
    pattern = re.compile(re.escape(before) + r"(\d+)" + re.escape(after) + r"(\..+)?")
    first = None
    for point in points:
        match = pattern.fullmatch(point)
        if match is None:
            return 0  # not inside a block: nothing is frozen
        layer = int(match.group(1)) + (1 if match.group(2) is None else 0)
        first = layer if first is None else min(first, layer)
    return first or 0


@dataclass
class PackedPrefix:
    """Prefix key/values of S rows: row s holds entries ``offset[s] .. offset[s] + length[s] - 1``
    of ``keys[l]``/``values[l]`` [P + 1, heads, head_dim] (None for a stood-in layer l)."""

    keys: list[torch.Tensor | None]
    values: list[torch.Tensor | None]
    offset: torch.Tensor  # [S] long, CPU
    length: torch.Tensor  # [S] long, CPU
    zero: torch.Tensor  # a zero scalar; stood-in layers get it expanded to [g, heads, held, head_dim]
    heads: int
    head_dim: int

    def cache(self, rows: torch.Tensor, config) -> DynamicCache | None:
        """A DynamicCache of ``rows``' prefixes, right-padded to the longest (None if all empty)."""
        rows = rows.cpu()
        held = int(self.length[rows].max())
        if not held:
            return None
        steps = torch.arange(held)
        hole = int(self.length.sum())
        index = torch.where(steps < self.length[rows, None], self.offset[rows, None] + steps, hole)  # [g, held]
        zeros = self.zero.expand(len(rows), self.heads, held, self.head_dim)
        layers = []
        for k, v in zip(self.keys, self.values):
            if k is None:
                layers.append((zeros, zeros))
            else:
                at = index.to(k.device)
                layers.append((k[at].transpose(1, 2), v[at].transpose(1, 2)))
        return DynamicCache(layers, config=config)


class _StandIn(torch.nn.Module):
    """Takes the place of a block: returns ``given`` if set, else its own input hidden states,
    as a 1-tuple where the real block returns a tuple."""

    def __init__(self, given: torch.Tensor | None, as_tuple: bool):
        super().__init__()
        self.given, self.as_tuple = given, as_tuple

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        out = hidden_states if self.given is None else self.given.to(hidden_states.device)
        return (out,) if self.as_tuple else out


@dataclass
class DeltaFree:
    """What ``precompute`` recorded for S rows fed from ``start`` [S] on (``width`` tokens at most).

    ``prefix``: the packed prefix key/values, or None (rows fed whole: ``start`` is 0);
    ``first``: F (0: no frozen blocks); ``hidden``: h_{F-1} [S, width, d] of the fed tokens (padding
    positions hold finite values, masked out of attention); ``blocks``: the decoder's ModuleList.
    """

    start: torch.Tensor
    width: int
    prefix: PackedPrefix | None
    first: int
    hidden: torch.Tensor | None
    blocks: torch.nn.ModuleList | None
    as_tuple: bool = False

    @contextlib.contextmanager
    def stand_ins(self, rows: torch.Tensor, width: int) -> Iterator[None]:
        """Around one decoder call over ``rows`` fed ``width`` tokens: blocks 0..F-1 stood in for."""
        if not self.first:
            yield
            return
        given = self.hidden[rows.to(self.hidden.device), :width]
        originals = [self.blocks[i] for i in range(self.first)]
        try:
            for i in range(self.first):
                self.blocks[i] = _StandIn(given if i == self.first - 1 else None, self.as_tuple)
            yield
        finally:
            for i, block in enumerate(originals):
                self.blocks[i] = block


def _plain_dynamic(cache) -> bool:
    return type(cache) is DynamicCache and not any(cache.is_sliding) and not any(cache.is_linear)


def precompute(model, input_ids: torch.Tensor, lengths: torch.Tensor, lookup: torch.Tensor,
               points: Sequence[str] = (), prefix_cache: bool = True,
               precision: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext) -> DeltaFree:
    """One no-grad pass over the right-padded rows ``input_ids`` [S, T] (``lengths``, ``lookup``
    [S], on the model's device): the frozen blocks' output for edits at ``points`` (none: no
    frozen blocks) and, with ``prefix_cache``, the packed prefix (kept only if the decoder returns
    a plain full-attention DynamicCache; else rows are fed whole). ``precision``: the forward's
    autocast context."""
    template = template_for(model)
    first = first_changed_block(template, points) if points else 0
    start = lookup.clone() if prefix_cache else torch.zeros_like(lookup)
    free = DeltaFree(start, int((lengths - start).max()), None, first, None,
                     module_by_name(model, template.block.rsplit(".", 1)[0]) if first else None)
    if not first and not prefix_cache:
        return free
    lengths_cpu = lengths.cpu()
    recorded = {}

    def record(module, args, output):
        recorded["tuple"] = isinstance(output, tuple)
        recorded["h"] = output[0] if recorded["tuple"] else output

    stop = template.block_name(first - 1) if first and not prefix_cache else None
    groups = [part for group in length_groups(lengths_cpu) for part in group.split(PRECOMPUTE_ROWS)]
    with torch.no_grad(), precision():
        for group in groups:
            rows = group.to(input_ids.device)
            width = int(lengths_cpu[group].max())
            steps = torch.arange(width, device=input_ids.device)
            batch = dict(input_ids=input_ids[rows, :width], attention_mask=(steps < lengths[rows, None]).long(),
                         use_cache=prefix_cache)
            handle = free.blocks[first - 1].register_forward_hook(record) if first else None
            try:
                with hooks(model, stop_after=stop):
                    out = run(model.base_model, **batch)
            finally:
                if handle is not None:
                    handle.remove()
            if prefix_cache:
                cache = getattr(out, "cache", None)
                if free.prefix is None and not _plain_dynamic(cache):
                    if not first:
                        return DeltaFree(torch.zeros_like(lookup), int(lengths.max()), None, 0, None, None)
                    return precompute(model, input_ids, lengths, lookup, points, False, precision)
                _pack_prefix(free, cache, group, first)
            if first:
                _keep_hidden(free, recorded.pop("h"), group)
                free.as_tuple = recorded["tuple"]
    return free


def _pack_prefix(free: DeltaFree, cache: DynamicCache, group: torch.Tensor, first: int) -> None:
    """Copy the prefix entries of ``group``'s rows (layers F and above) into ``free.prefix``."""
    start = free.start.cpu()
    if free.prefix is None:
        total = int(start.sum())
        keys, values = [], []
        for l, layer in enumerate(cache.layers):
            kv = [None, None] if l < first else [
                t.new_zeros(total + 1, t.shape[1], t.shape[3]) for t in (layer.keys, layer.values)]
            keys.append(kv[0])
            values.append(kv[1])
        heads, _, head_dim = cache.layers[0].keys.shape[1:]
        free.prefix = PackedPrefix(keys, values, start.cumsum(0) - start, start,
                                   cache.layers[0].keys.new_zeros(()), heads, head_dim)
    prefix = free.prefix
    width = cache.layers[0].keys.shape[2]
    held = torch.arange(width) < start[group, None]  # [g, w]: the prefix positions
    dest = (prefix.offset[group, None] + torch.arange(width))[held]
    for l in range(first, len(cache.layers)):
        layer = cache.layers[l]
        for store, tensor in ((prefix.keys[l], layer.keys), (prefix.values[l], layer.values)):
            store[dest.to(store.device)] = tensor.transpose(1, 2)[held.to(tensor.device)].to(store.dtype)


def _keep_hidden(free: DeltaFree, hidden: torch.Tensor, group: torch.Tensor) -> None:
    """Store h_{F-1} [g, w, d] of ``group``'s rows at their fed positions (from ``start`` on)."""
    if free.hidden is None:
        free.hidden = hidden.new_zeros(len(free.start), free.width, hidden.shape[-1])
    here = hidden.device
    positions = (free.start[group.to(free.start.device), None].to(here)
                 + torch.arange(free.width, device=here)).clamp_max(hidden.shape[1] - 1)
    free.hidden[group.to(free.hidden.device)] = hidden.gather(
        1, positions[..., None].expand(-1, -1, hidden.shape[-1])).to(free.hidden.device)
