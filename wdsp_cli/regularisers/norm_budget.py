"""The norm budget: the accumulated update of every edited matrix kept within a fraction of the
matrix's own norm, so that many batches cannot grow it without bound (beyond the paper;
docs/stabilisers/README.md).

Public API:
    budget_decay(drift, base, budget) -> float       the factor s in (0, 1]
    apply_norm_budget(state, modules, budget) -> {module: s}

For an edited matrix with D = W - W_0 (W_0: the base model's), at the start of an iteration:
    s = budget * ||W_0||_F / ||D||_F  if ||D||_F > budget * ||W_0||_F,  else s = 1;
    W <- W_0 + s D.
The batch's targets are then optimised and written on the shrunk model, so the new edit lands
in full and the older ones fade by s: W_t = W_0 + s_t (W_{t-1} - W_0) + Delta_t, and
||W_t - W_0||_F <= budget ||W_0||_F + ||Delta_t||_F. The iteration's diff stores s_t with Delta_t
(``model.weights.LayerUpdate.decay``), so a checkout replays it exactly.
"""

from __future__ import annotations

from collections.abc import Sequence


def budget_decay(drift: float, base: float, budget: float) -> float:
    """s = min(1, budget * base / drift): the factor that brings ||D||_F = ``drift`` back to the budget."""
    limit = budget * base
    return 1.0 if drift <= limit else limit / drift


def apply_norm_budget(state, modules: Sequence[str], budget: float) -> dict[str, float]:
    """Shrink each of ``modules`` in ``state`` (a ``WeightState``) that has passed the budget;
    returns {module: s} for every module (1.0 where nothing changed)."""
    decays = {}
    for module in modules:
        decays[module] = budget_decay(*state.drift(module), budget)
        state.decay(module, decays[module])
    return decays
