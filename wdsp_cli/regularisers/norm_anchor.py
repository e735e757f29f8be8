"""Norm anchoring of the solved values (after NAS, "Norm Anchors Make Model Edits Last", Liu et al.,
arXiv 2602.02543; docs/stabilisers/README.md says where this differs from the paper).

Public API:
    reference_norm(values [B, d], trim=REFERENCE_TRIM) -> float
    anchored_targets(targets [B, d], mlp_values [B, d], deltas [B, d], reference) -> [B, d]

At the z-layer's MLP output, request i's solved value is v*_i = v0_i + delta_i (v0_i: the MLP's
output at the subject's last token of the bare prompt, on the model being edited). NAS rescales it
to a reference norm a taken from the unedited model,
    v*_i <- a * v*_i / ||v*_i||,
and the target moves by the same amount: Z_i <- Z_i + (a v*_i / ||v*_i|| - v*_i). The reference
a is the mean ||v*|| of a batch solved on the base model, its largest ``REFERENCE_TRIM`` share
left out; a workspace chooses it once (``workspace.norm_anchor``). Without it the feedback loop
NAS describes runs unchecked: edited weights give larger v0, so larger targets, larger updates.
"""

from __future__ import annotations

import torch

REFERENCE_TRIM = 0.05  # NAS leaves out the largest 5% of the solved norms


def reference_norm(values: torch.Tensor, trim: float = REFERENCE_TRIM) -> float:
    """Mean row norm of ``values`` without the largest ``trim`` share of them (at least one is kept)."""
    norms = values.norm(dim=1).sort().values
    keep = max(1, len(norms) - int(trim * len(norms)))
    return float(norms[:keep].mean())


def anchored_targets(targets: torch.Tensor, mlp_values: torch.Tensor, deltas: torch.Tensor,
                     reference: float) -> torch.Tensor:
    """Z + (a v*/||v*|| - v*) with v* = mlp_values + deltas, row by row (rows with v* = 0 are kept)."""
    solved = mlp_values + deltas
    norms = solved.norm(dim=1, keepdim=True)
    scaled = torch.where(norms > 0, solved * (reference / norms.clamp_min(1e-30)), solved)
    return targets + (scaled - solved)
