"""AlphaEdit's null-space projection and the keys of earlier batches (method.md section 5).

Public API:
    null_space_projection(second_moment, threshold) -> (P [d, d] float64, rank)
    key_moment(keys) -> K^T K [d, d] float64 for keys [B, d]

With C = U diag(s) U^T (eigendecomposition of the symmetric second moment of the preserved keys
K_0), P = U_0 U_0^T over the eigenvectors whose eigenvalue is below ``threshold``: P C ~ 0, so an
update Delta = Delta' P leaves W k_0 (almost) unchanged for the preserved keys k_0. AlphaEdit's
code takes the SVD of C; for a symmetric positive semi-definite C that is the same decomposition.
"""

from __future__ import annotations

import torch

from ..errors import EditError


def null_space_projection(second_moment: torch.Tensor, threshold: float) -> tuple[torch.Tensor, int]:
    """P = U_0 U_0^T [d, d] (float64, on C's device) and the null space's dimension."""
    C = second_moment.double()
    eigenvalues, vectors = torch.linalg.eigh((C + C.T) / 2)
    small = vectors[:, eigenvalues < threshold]
    if small.shape[1] == 0:
        raise EditError(f"no eigenvalue of the key statistics is below the null-space threshold {threshold} "
                        f"(the smallest is {float(eigenvalues.min()):.3g}), so AlphaEdit could change nothing",
                        hint="raise --nullspace-threshold above the smallest eigenvalue")
    return small @ small.T, int(small.shape[1])


def key_moment(keys: torch.Tensor) -> torch.Tensor:
    """K_p K_p^T in the paper's column convention: for keys [B, d] as rows, keys^T keys [d, d]."""
    k = keys.double()
    return k.T @ k
