"""The closed-form update against least squares, and factor form against the dense update."""

import torch

from wdsp_cli.methods.solve import update_factors


def _problem(d_out=12, d_in=20, b=5, n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    R = torch.randn(b, d_out, generator=g, dtype=torch.float64)
    K = torch.randn(b, d_in, generator=g, dtype=torch.float64)
    K0 = torch.randn(n, d_in, generator=g, dtype=torch.float64)
    C = K0.T @ K0 / n
    return R, K, K0, C


def test_update_solves_the_regularised_least_squares_problem():
    # argmin_D ||D K^T - R^T||^2 + lam * ||D K0^T||^2 / n, i.e. D [K^T, sqrt(lam/n) K0^T] ~ [R^T, 0]
    R, K, K0, C = _problem()
    lam = 3.0
    left, right = update_factors(R, K, C, lam)
    A = torch.cat([K.T, (lam / K0.shape[0]) ** 0.5 * K0.T], dim=1)  # [d_in, b + n]
    B = torch.cat([R.T, torch.zeros(R.shape[1], K0.shape[0], dtype=torch.float64)], dim=1)
    D_ls = torch.linalg.lstsq(A.T, B.T).solution.T  # [d_out, d_in]
    torch.testing.assert_close(left @ right.T, D_ls, rtol=1e-9, atol=1e-10)


def test_factor_form_equals_dense_formula_and_shapes():
    R, K, _, C = _problem(seed=1)
    lam = 15000.0
    left, right = update_factors(R.float(), K.float(), C.float(), lam)
    assert left.dtype == right.dtype == torch.float64
    assert left.shape == (12, 5) and right.shape == (20, 5)
    R, K, C = R.float().double(), K.float().double(), C.float().double()
    dense = R.T @ K @ torch.linalg.inv(lam * C + K.T @ K)
    torch.testing.assert_close(left @ right.T, dense, rtol=1e-6, atol=1e-12)


def test_small_lambda_interpolates_the_keys():
    # with lam -> 0 and b <= d_in the update maps each key exactly to its residual
    R, K, _, C = _problem(seed=2)
    left, right = update_factors(R, K, C, 1e-9)
    torch.testing.assert_close((left @ right.T) @ K.T, R.T, rtol=1e-5, atol=1e-6)


def test_singular_system_and_non_finite_inputs_raise_edit_error():
    import pytest

    from wdsp_cli.errors import EditError

    R, K, _, C = _problem(seed=3)
    with pytest.raises(EditError, match="singular"):
        update_factors(R, K, torch.zeros(20, 20, dtype=torch.float64), 1.0)  # K K^T has rank 5 < 20
    R_bad = R.clone()
    R_bad[0, 0] = float("nan")
    with pytest.raises(EditError, match="not finite"):
        update_factors(R_bad, K, C, 1.0)
