"""A locate-then-edit method as one unit: everything that distinguishes it in a batch edit.

Public API:
    Method          the interface (MEMIT's behaviour by default); one instance per method file
    MethodHistory   what a method may read of a workspace's past to restore its state

A method says
  - where its residuals live: ``points`` (modules whose outputs get an optimised delta at the
    z-layer) and ``target`` (the point where Z and the current value V are compared);
  - how they spread over the edited layers l_1 < ... < l_n: at layer i (0-based) the residual is
    R_i = (Z - V_i) / spread(n - i), spread(m) = m ** spread_power;
  - its closed-form update per layer, ``update(...) -> (left [d_out, B], right [d_in, B])``
    with Delta W = left @ right^T (float64);
  - the state it carries between iterations: ``start`` builds it at the beginning of an edit
    (from a workspace's history, or fresh), ``advance`` moves it past a committed batch. Every
    iteration stores its batch's keys, and a method's derived per-layer state is cached by the
    workspace (``MethodHistory.derived``), so resume and rollback restore the same state.
The default is MEMIT's: stateless, Delta = R K^T (lambda C + K K^T)^-1 (``solve.update_factors``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol


class MethodHistory(Protocol):
    """A workspace's past as a method sees it (``jobs.edit`` implements it over a workspace)."""

    def iteration_keys(self) -> Iterable[dict]:
        """The keys {layer: [B, d_in]} of each committed iteration 1..HEAD, in order."""

    def derived(self, name: str, layer: int, params: dict[str, str], compute: Callable[[], Any]):
        """A per-layer tensor derived from the statistics: the stored one when it was made with the
        same ``params`` from the same statistics, else ``compute()``, stored and returned."""


@dataclass(frozen=True)
class Method:
    """name; ``point_kinds``: "block" | "attn_out" | "mlp_out" of the optimised points; ``target_kind``;
    ``spread_power``: R / remaining ** spread_power."""

    name: str
    point_kinds: tuple[str, ...] = ("block",)
    target_kind: str = "block"
    spread_power: float = 1.0

    # ---- where the residuals live and how they spread ----------------------------------------

    def points(self, template, z_layer: int) -> list[str]:
        return [self._name(template, kind, z_layer) for kind in self.point_kinds]

    def target(self, template, z_layer: int) -> str:
        return self._name(template, self.target_kind, z_layer)

    def spread(self, remaining: int) -> float:
        return float(remaining) ** self.spread_power

    @staticmethod
    def _name(template, kind: str, layer: int) -> str:
        return {"block": template.block_name, "attn_out": template.attn_out_name,
                "mlp_out": template.mlp_out_name}[kind](layer)

    # ---- the update and the state it needs -----------------------------------------------------

    def start(self, config, second_moments: Mapping[int, Any], history: MethodHistory | None = None) -> Any:
        """The state before the next batch (None: a stateless method)."""
        return None

    def update(self, layer: int, residuals, keys, second_moment, state, config):
        """residuals [B, d_out], keys [B, d_in], second_moment C_l [d_in, d_in] -> (left, right)."""
        from .solve import update_factors

        return update_factors(residuals, keys, second_moment, config.mom2_update_weight)

    def advance(self, state, batch_keys: Mapping[int, Any]) -> Any:
        """The state after a committed batch whose keys were ``batch_keys`` {layer: [B, d_in]}."""
        return state
