"""WD losses against analytic truths and POT (ot.emd2, ot.sinkhorn2)."""

import numpy as np
import ot
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from wdsp_cli.errors import InputError
from wdsp_cli.regularisers.wasserstein import (
    WassersteinRegulariser,
    dirac_penalty,
    sinkhorn_1d,
    sinkhorn_potentials_1d,
    wasserstein_1d_pp,
)

vectors = st.integers(2, 24).flatmap(
    lambda d: st.tuples(*[st.lists(st.floats(-50, 50, allow_nan=False), min_size=d, max_size=d)] * 2))


@settings(max_examples=50, deadline=None)
@given(vectors)
def test_exact_is_zero_on_itself_symmetric_and_equals_pot_emd2(pair):
    x, y = (torch.tensor([v], dtype=torch.float64) for v in pair)
    assert wasserstein_1d_pp(x, x).item() == 0
    assert wasserstein_1d_pp(x, y).item() == pytest.approx(wasserstein_1d_pp(y, x).item())
    d = x.shape[1]
    a = np.full(d, 1.0 / d)
    M = (x[0].numpy()[:, None] - y[0].numpy()[None, :]) ** 2
    assert wasserstein_1d_pp(x, y).item() == pytest.approx(ot.emd2(a, a, M), rel=1e-6, abs=1e-8)


def test_sinkhorn_tends_to_exact_as_the_regularisation_shrinks():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(3, 24, generator=g), 2 * torch.randn(3, 24, generator=g) + 0.5
    exact = wasserstein_1d_pp(x, y)
    errors = [float(((sinkhorn_1d(x, y, reg, max_iter=5000, tol=1e-6) - exact) / exact).abs().max())
              for reg in (0.1, 0.03, 0.01)]
    assert errors == sorted(errors, reverse=True) and errors[-1] < 0.05, errors


def test_sinkhorn_plan_agrees_with_pot_sinkhorn_on_small_inputs():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(1, 12, generator=g, dtype=torch.float64), torch.randn(1, 12, generator=g, dtype=torch.float64)
    reg = 0.05
    P, *_ = sinkhorn_potentials_1d(x, y, reg, max_iter=5000, tol=1e-10)
    M = ((x[0][:, None] - y[0][None, :]) ** 2).numpy()
    a = np.full(12, 1 / 12)
    P_pot = ot.sinkhorn(a, a, M, reg * M.mean(), method="sinkhorn_log", numItermax=5000, stopThr=1e-12)
    np.testing.assert_allclose(P[0].numpy(), P_pot, atol=1e-7)
    cost = sinkhorn_1d(x, y, reg, max_iter=5000, tol=1e-10)
    assert cost.item() == pytest.approx(float((P_pot * M).sum()), rel=1e-6)


def test_envelope_gradient_matches_finite_differences_and_is_finite_at_zero():
    g = torch.Generator().manual_seed(2)
    h = torch.randn(2, 16, generator=g, dtype=torch.float64)
    delta = (0.3 * torch.randn(2, 16, generator=g, dtype=torch.float64)).requires_grad_(True)
    loss = sinkhorn_1d(h, h + delta, 0.05, max_iter=5000, tol=1e-12).sum()
    (grad,) = torch.autograd.grad(loss, delta)
    step = 1e-6 * torch.randn(2, 16, generator=g, dtype=torch.float64)
    with torch.no_grad():
        plus = sinkhorn_1d(h, h + delta + step, 0.05, max_iter=5000, tol=1e-12).sum()
        minus = sinkhorn_1d(h, h + delta - step, 0.05, max_iter=5000, tol=1e-12).sum()
    # d/dt OT_eps(C(t)) = <P*, dC/dt>: the envelope value <P*, C> differs from OT_eps by the entropy
    # term, whose derivative is not zero; so compare against the directional derivative of <P*, C>
    # only loosely, and check exactness on the exact mode instead.
    assert torch.isfinite(grad).all()
    assert float((grad * step).sum()) == pytest.approx(float(plus - minus) / 2, rel=0.2)
    for mode in ("sinkhorn", "exact", "dirac"):
        zero = torch.zeros(2, 16, dtype=torch.float64, requires_grad=True)
        const = torch.ones(2, 16, dtype=torch.float64)
        reg = WassersteinRegulariser(mode=mode, scale="pow10")
        out = reg({"p": zero}, {"p": const}, torch.ones(2, dtype=torch.float64), step=1)
        (gz,) = torch.autograd.grad(out.sum(), zero)
        assert torch.isfinite(out).all() and torch.isfinite(gz).all(), mode


def test_dirac_is_half_the_squared_norm_and_scales_behave():
    delta = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    torch.testing.assert_close(dirac_penalty(delta), torch.tensor([12.5, 0.0]))
    h = torch.tensor([[1.0, 2.0], [1.0, 1.0]])
    nll = torch.tensor([2.0, 2.0])
    out = WassersteinRegulariser(mode="dirac", scale="nll")({"p": delta}, {"p": h}, nll, step=1)
    torch.testing.assert_close(out, torch.tensor([2.0, 0.0]))  # normalised to the NLL; 0 where WD = 0
    out = WassersteinRegulariser(mode="dirac", scale="pow10", weight=2.0)({"p": delta}, {"p": h}, nll, step=1)
    torch.testing.assert_close(out, torch.tensor([2 * 12.5 / 100, 0.0]))
    assert WassersteinRegulariser()({"p": delta}, {"p": h}, nll, step=0).eq(0).all()  # starts at step 1
    with pytest.raises(InputError):
        WassersteinRegulariser(mode="wasserstein")


def test_sinkhorn_gradient_is_that_of_the_plan_times_the_cost_and_keeps_no_plan_for_backward(monkeypatch):
    from wdsp_cli.regularisers import wasserstein

    g = torch.Generator().manual_seed(4)
    h = torch.randn(40, 32, generator=g)
    delta = (0.5 * torch.randn(40, 32, generator=g)).requires_grad_(True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        loss = sinkhorn_1d(h, h + delta, 0.05, max_iter=2000, tol=1e-9)
    assert max(saved) <= 40 * 32  # [B, d] tensors only, no [B, d, d] plan or cost
    (grad,) = torch.autograd.grad(loss.sum(), delta)
    # the same as autograd through <stopgrad(P), C(x, y)>, one 16-row solve at a time
    for rows in torch.arange(40).split(wasserstein.SINKHORN_ROWS_PER_SOLVE):
        x, y = h[rows].double(), (h[rows] + delta[rows]).double()
        P = sinkhorn_potentials_1d(x.detach(), y.detach(), 0.05, 2000, 1e-9)[0]
        plain = (P * (x[:, :, None] - y[:, None, :]).pow(2)).sum(dim=(-1, -2))
        (expected,) = torch.autograd.grad(plain.sum(), y)
        torch.testing.assert_close(loss[rows].double(), plain.detach(), rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(grad[rows].double(), expected, rtol=1e-5, atol=1e-7)
    # solving all rows at once gives the same losses, up to the tolerance
    monkeypatch.setattr(wasserstein, "SINKHORN_ROWS_PER_SOLVE", 1000)
    whole = sinkhorn_1d(h, h + delta, 0.05, max_iter=2000, tol=1e-9)
    torch.testing.assert_close(whole, loss, rtol=1e-4, atol=1e-6)
    assert len(sinkhorn_1d(h[:0], h[:0])) == 0
