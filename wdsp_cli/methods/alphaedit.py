"""AlphaEdit (Fang et al., ICLR 2025; method.md section 5): MEMIT's targets and spreading, with
the update projected onto the null space of the preserved keys' statistics and regularised by
the keys of earlier batches:

    Delta = R K^T P (K K^T P + K_p K_p^T P + alpha I)^-1      (``solve.projected_update_factors``)

State, per edited layer l: P_l (``nullspace.null_space_projection`` of C_l with
``config.nullspace_threshold``) and K_p K_p^T, the summed key moments of all earlier batches.
Saved and restored: P_l is cached by the workspace ("nullspace", keyed by the threshold and the
statistics it came from); K_p K_p^T is rebuilt by summing, in iteration order, the keys every
committed iteration stores, so a resumed or rolled-back workspace sums the same numbers in the
same order as a live run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .base import Method, MethodHistory


@dataclass(frozen=True)
class AlphaEditState:
    """projections {layer: P [d_in, d_in] float64}; previous {layer: K_p K_p^T [d_in, d_in] float64 or None}."""

    projections: dict
    previous: dict


def accumulate(previous: Mapping, keys: Mapping) -> dict:
    """previous[l] + K_l^T K_l per layer in ``previous`` (float64); the one order every path uses."""
    from .nullspace import key_moment

    out = dict(previous)
    for layer, k in keys.items():
        if layer in out:
            out[layer] = key_moment(k) if out[layer] is None else out[layer] + key_moment(k)
    return out


class AlphaEdit(Method):
    def start(self, config, second_moments, history: MethodHistory | None = None) -> AlphaEditState:
        from .nullspace import null_space_projection

        def projection(layer):
            return lambda: null_space_projection(second_moments[layer], config.nullspace_threshold)[0]

        params = {"threshold": repr(float(config.nullspace_threshold))}
        projections = {l: history.derived("nullspace", l, params, projection(l)) if history is not None
                       else projection(l)() for l in config.layers}
        previous: dict = {l: None for l in config.layers}
        for keys in history.iteration_keys() if history is not None else ():
            previous = accumulate(previous, keys)
        return AlphaEditState(projections, previous)

    def update(self, layer, residuals, keys, second_moment, state: AlphaEditState, config):
        from .solve import projected_update_factors

        return projected_update_factors(residuals, keys, state.projections[layer].to(keys.device),
                                        state.previous.get(layer), config.alphaedit_l2)

    def advance(self, state: AlphaEditState, batch_keys) -> AlphaEditState:
        return AlphaEditState(state.projections, accumulate(state.previous, batch_keys))


METHOD = AlphaEdit(name="alphaedit", point_kinds=("block",), target_kind="block", spread_power=1.0)
