"""The closed-form MEMIT update, in float64 and in factor form.

Public API:
    update_factors(residuals, keys, second_moment, lam) -> (left [d_out, B], right [d_in, B])
    projected_update_factors(residuals, keys, projection, previous, alpha) -> (left, right)  AlphaEdit

MEMIT (method.md section 1, step 3; the paper's eq. 10):

    Delta = R K^T (lam C + K K^T)^-1 = left @ right^T,
    left = R [d_out, B],  right = A = (lam C + K K^T)^-1 K [d_in, B]

(the system matrix is symmetric, so A^T = K^T (lam C + K K^T)^-1). R holds the residuals
as columns, K the keys. Solved by Cholesky in float64; a singular system is refused.
Storing (left, right) costs (d_in + d_out) B numbers instead of d_in d_out, exactly.
"""

from __future__ import annotations

import torch

from ..errors import EditError


def update_factors(residuals: torch.Tensor, keys: torch.Tensor, second_moment: torch.Tensor,
                   lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """residuals [B, d_out], keys [B, d_in], second_moment C [d_in, d_in] -> float64 factors."""
    R = residuals.double().T
    K = keys.double().T.to(R.device)
    system = lam * second_moment.double().to(R.device) + K @ K.T
    if not (torch.isfinite(system).all() and torch.isfinite(R).all()):
        raise EditError("the closed-form update is not finite",
                        hint="check the covariance statistics (wdsp covariance) and the edit's residuals")
    chol, info = torch.linalg.cholesky_ex(system)
    if int(info) != 0:
        raise EditError("the update's linear system (lam C + K K^T) is singular (not positive definite)",
                        hint="recompute covariance statistics on more text, or raise mom2_update_weight")
    A = torch.cholesky_solve(K, chol)
    if not (torch.isfinite(A).all() and torch.isfinite(R).all()):
        raise EditError("the closed-form update is not finite",
                        hint="check the covariance statistics (wdsp covariance) and mom2_update_weight")
    return R, A


def projected_update_factors(residuals: torch.Tensor, keys: torch.Tensor, projection: torch.Tensor,
                             previous: torch.Tensor | None, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """AlphaEdit's update (Fang et al. 2025; method.md section 5), in factor form, float64:

        Delta = R K^T P (K K^T P + K_p K_p^T P + alpha I)^-1 = left @ right^T,
        left = R [d_out, B],  right = (P (K K^T + K_p K_p^T) + alpha I)^-1 P K [d_in, B]

    (P and K K^T are symmetric, so the transpose of the inverse is the inverse written here).
    residuals [B, d_out], keys [B, d_in], projection P [d_in, d_in], previous = K_p K_p^T
    [d_in, d_in] (the keys of earlier batches; None for none). Solved by LU (the system is not
    symmetric); a singular or non-finite system is refused.
    """
    R = residuals.double().T
    K = keys.double().T.to(R.device)
    P = projection.double().to(R.device)
    moment = K @ K.T
    if previous is not None:
        moment = moment + previous.double().to(R.device)
    system = P @ moment + alpha * torch.eye(K.shape[0], dtype=torch.float64, device=R.device)
    right, info = torch.linalg.solve_ex(system, P @ K)
    if int(info) != 0 or not (torch.isfinite(right).all() and torch.isfinite(R).all()):
        raise EditError("AlphaEdit's linear system is singular or not finite",
                        hint="check the key statistics (wdsp covariance) and raise alphaedit_l2")
    return R, right
