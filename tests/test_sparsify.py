"""SP: prune keeps exactly the largest entries; dropout density and mean; seeding."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from wdsp_cli.errors import InputError
from wdsp_cli.regularisers.sparsify import prune_mask, sparsify


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.floats(0.01, 1.0), st.integers(0, 10_000))
def test_prune_keeps_exactly_the_largest_entries(d, pr, seed):
    delta = torch.randn(3, d, generator=torch.Generator().manual_seed(seed))
    mask = prune_mask(delta, pr)
    k = max(1, min(d, round(pr * d)))
    assert (mask.sum(-1) == k).all()
    for row, m in zip(delta.abs(), mask):
        kept, dropped = row[m], row[~m]
        if dropped.numel():
            assert kept.min() >= dropped.max()


def test_ties_are_broken_by_the_lower_index():
    delta = torch.tensor([[1.0, -1.0, 1.0, 0.5, -1.0]])
    assert prune_mask(delta, 0.4).tolist() == [[True, True, False, False, False]]


def test_dropout_density_is_within_binomial_bounds_and_mean_is_preserved():
    d, rows, pr, dr = 576, 200, 0.7, 0.3
    delta = torch.ones(rows, d)  # all entries tie: prune keeps the first round(pr * d)
    out = sparsify(delta, pr, dr, torch.Generator().manual_seed(0))
    kept = round(pr * d) * rows
    n_alive = float((out.delta != 0).sum())
    sd = math.sqrt(kept * dr * (1 - dr))
    assert abs(n_alive - kept * (1 - dr)) < 5 * sd
    assert out.density.mean().item() == pytest.approx(pr * (1 - dr), abs=0.01)
    # survivors are rescaled so the mean of the pruned vector is preserved in expectation
    assert out.delta.sum().item() == pytest.approx(kept, rel=5 * sd / kept)
    torch.testing.assert_close(out.norm, out.delta.norm(dim=-1))


def test_same_seed_same_result_and_no_dropout_is_pure_pruning():
    delta = torch.randn(4, 50, generator=torch.Generator().manual_seed(1))
    a = sparsify(delta, 0.7, 0.3, torch.Generator().manual_seed(5))
    b = sparsify(delta, 0.7, 0.3, torch.Generator().manual_seed(5))
    c = sparsify(delta, 0.7, 0.3, torch.Generator().manual_seed(6))
    assert torch.equal(a.delta, b.delta) and not torch.equal(a.delta, c.delta)
    assert torch.equal(sparsify(delta, 0.7, 0.0).delta, delta * prune_mask(delta, 0.7))
    assert torch.equal(sparsify(delta, 1.0, 0.0).delta, delta)


@pytest.mark.parametrize("pr,dr", [(0.0, 0.3), (1.5, 0.3), (0.7, 1.0), (0.7, -0.1)])
def test_out_of_range_rates_are_refused(pr, dr):
    with pytest.raises(InputError):
        sparsify(torch.ones(1, 4), pr, dr)
