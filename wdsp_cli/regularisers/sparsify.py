"""Update sparsification (SP): prune then dropout each request's residual vector.

Public API:
    prune_mask(delta, keep_fraction) -> bool mask [B, d]
    sparsify(delta, keep_fraction=0.7, drop_rate=0.3, generator=None) -> SparsifyResult

The paper's section "Parameter Update Sparsification" (method.md section 4), per row delta_i:
    1. prune:   keep the k = round(pr * d) entries of largest |delta_i|, zero the rest
                (ties broken by the lower index, deterministically);
    2. dropout: zero each kept entry with probability dr, scale survivors by 1 / (1 - dr),
                from ``generator`` (seeded by the caller), so E[dropout(x)] = x.
Expected density pr * (1 - dr) (0.49 with the paper's pr = 0.7, dr = 0.3).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .configs import SPConfig


@dataclass(frozen=True)
class SparsifyResult:
    """``delta`` [B, d] sparsified; per row ``density`` (non-zero fraction) and ``norm``."""

    delta: torch.Tensor
    density: torch.Tensor
    norm: torch.Tensor


def _check(keep_fraction: float, drop_rate: float) -> None:
    SPConfig(enabled=True, prune=keep_fraction, dropout=drop_rate)  # the checks, with the options' names


def prune_mask(delta: torch.Tensor, keep_fraction: float) -> torch.Tensor:
    """[B, d] bool: True on each row's round(keep_fraction * d) largest |delta| (lower index wins ties)."""
    _check(keep_fraction, 0.0)
    d = delta.shape[-1]
    k = max(1, min(d, round(keep_fraction * d)))
    order = torch.argsort(-delta.abs(), dim=-1, stable=True)  # stable: equal magnitudes keep index order
    mask = torch.zeros_like(delta, dtype=torch.bool)
    return mask.scatter_(-1, order[..., :k], True)


def sparsify(delta: torch.Tensor, keep_fraction: float = 0.7, drop_rate: float = 0.3,
             generator: torch.Generator | None = None) -> SparsifyResult:
    """Prune to ``keep_fraction`` then dropout at ``drop_rate`` with 1/(1 - dr) rescaling."""
    _check(keep_fraction, drop_rate)
    out = delta * prune_mask(delta, keep_fraction)
    if drop_rate > 0:
        keep = torch.rand(delta.shape, generator=generator, device="cpu").to(delta.device) >= drop_rate
        out = out * keep / (1.0 - drop_rate)
    density = (out != 0).float().mean(dim=-1)
    return SparsifyResult(out, density, out.norm(dim=-1))
