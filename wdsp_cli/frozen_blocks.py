"""Decoder blocks that no delta reaches: run them once, then stand in for them.

Public API:
    first_changed_block(template, points) -> F   the lowest block whose output depends on a delta
    FrozenBlocks(model, points, num_rows, width)  or None via ``frozen_blocks(...)``
    FrozenBlocks.around(rows, width)              context for one decoder call over ``rows``

The target optimisation adds delta at the output of block L (MEMIT's point) or inside block L
(PMET's attention and MLP outputs). Blocks 0..F-1, with F = L + 1 or L, do not depend on delta,
in any token: their output h_{F-1} [S, W, d] is the same at every step. So the first call over a
row records h_{F-1} (before any edit of block F-1's output), and later calls swap blocks
0..F-1 of the decoder's ModuleList for stand-ins that cost nothing: the last one returns the
recorded h_{F-1} of the rows, so the edit hooks on block F-1 and everything above run as before.
Every block keeps its place (and name), so hooks, layer indices and the key/value cache entries
of the stood-in blocks (left untouched) stay valid.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence

import torch

from .architectures import ArchitectureTemplate, module_by_name, template_for


def first_changed_block(template: ArchitectureTemplate, points: Sequence[str]) -> int:
    """F: the lowest block whose output depends on a delta added at ``points``; a point at block
    L's output (``template.block_name(L)``) gives L + 1, a module inside block L gives L."""
    before, after = template.block.split("{}")
    pattern = re.compile(re.escape(before) + r"(\d+)" + re.escape(after) + r"(\..+)?")
    first = None
    for point in points:
        match = pattern.fullmatch(point)
        if match is None:
            return 0  # not inside a block: nothing can be skipped
        layer = int(match.group(1)) + (1 if match.group(2) is None else 0)
        first = layer if first is None else min(first, layer)
    return first or 0


class _StandIn(torch.nn.Module):
    """Takes the place of a block: returns ``given`` if set, else its own input hidden states,
    as a 1-tuple where the real block returns a tuple."""

    def __init__(self, given: torch.Tensor | None, as_tuple: bool):
        super().__init__()
        self.given, self.as_tuple = given, as_tuple

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs):
        out = hidden_states if self.given is None else self.given.to(hidden_states.device)
        return (out,) if self.as_tuple else out


class FrozenBlocks:
    """h_{F-1} of each fed row, recorded on its first call and given on later ones.

    ``hidden``: [num_rows, width, d] (allocated on the first record, on block F-1's device);
    ``recorded``: [num_rows] bool. Padding positions a row never had hold zeros: they are
    masked out of attention, so any finite value serves.
    """

    def __init__(self, model: torch.nn.Module, template: ArchitectureTemplate, first: int,
                 num_rows: int, width: int):
        self.model, self.first, self.width = model, first, width
        self.blocks = module_by_name(model, template.block.rsplit(".", 1)[0])
        self.hidden: torch.Tensor | None = None
        self.as_tuple = False  # the block's output type, seen when recording
        self.recorded = torch.zeros(num_rows, dtype=torch.bool)

    @contextlib.contextmanager
    def around(self, rows: torch.Tensor, width: int) -> Iterator[None]:
        """Around one decoder call over ``rows`` [g] (fed ``width`` tokens wide): give h_{F-1}
        if every row is recorded, else run the real blocks and record it."""
        rows = rows.cpu()
        if bool(self.recorded[rows].all()):
            with self._stand_ins(self.hidden[rows.to(self.hidden.device), :width]):
                yield
            return
        handle = self.blocks[self.first - 1].register_forward_hook(self._recorder(rows))
        try:
            yield
        finally:
            handle.remove()

    def _recorder(self, rows: torch.Tensor):
        def record(module, args, output):
            self.as_tuple = isinstance(output, tuple)
            hidden = (output[0] if self.as_tuple else output).detach()
            if self.hidden is None:
                self.hidden = hidden.new_zeros(len(self.recorded), self.width, hidden.shape[-1])
            self.hidden[rows.to(hidden.device), : hidden.shape[1]] = hidden
            self.recorded[rows] = True
        return record

    @contextlib.contextmanager
    def _stand_ins(self, given: torch.Tensor) -> Iterator[None]:
        originals = [self.blocks[i] for i in range(self.first)]
        try:
            for i in range(self.first):
                self.blocks[i] = _StandIn(given if i == self.first - 1 else None, self.as_tuple)
            yield
        finally:
            for i, block in enumerate(originals):
                self.blocks[i] = block


def frozen_blocks(model: torch.nn.Module, points: Sequence[str], num_rows: int, width: int) -> FrozenBlocks | None:
    """FrozenBlocks for a call feeding ``num_rows`` rows at most ``width`` tokens wide, or None when
    every block depends on a delta (F = 0)."""
    template = template_for(model)
    first = first_changed_block(template, points)
    return FrozenBlocks(model, template, first, num_rows, width) if first > 0 else None
