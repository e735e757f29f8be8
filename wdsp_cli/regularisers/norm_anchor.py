"""Norm anchoring of the target values (after NAS, "Norm Anchors Make Model Edits Last", arXiv
2602.02543; docs/stabilisers.md for where this differs from the paper).

Public API:
    anchor_norms(targets [B, d], reference [B, d]) -> [B, d]

Each request's solved target value z_i (at the method's target point of the z-layer) is rescaled
to the norm of v0_i, the value the base model computes at the same point of the same prompt:
    z_i <- z_i * ||v0_i|| / ||z_i||.
The direction the optimisation found is kept; its length no longer follows the edited model's
values, whose growth would otherwise feed the next batch's targets (the feedback loop NAS
describes: larger weights -> larger values -> larger targets -> larger updates).
"""

from __future__ import annotations

import torch


def anchor_norms(targets: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``targets`` rescaled row by row to the norms of ``reference`` (rows of zero norm are kept)."""
    norms = targets.norm(dim=1, keepdim=True)
    scale = torch.where(norms > 0, reference.norm(dim=1, keepdim=True) / norms.clamp_min(1e-30),
                        torch.ones_like(norms))
    return targets * scale
