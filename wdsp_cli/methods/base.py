"""What distinguishes one locate-then-edit method from another in a batch edit."""

from __future__ import annotations

from dataclasses import dataclass

from ..model.architectures import ArchitectureTemplate


@dataclass(frozen=True)
class MethodSpec:
    """name; ``points``: modules whose outputs get an optimised delta at the z-layer;
    ``target``: the point whose target Z the residual R = Z - current is measured at;
    ``spread``: the divisor of R at edited layer i of n, from remaining = n - i (0-based i)."""

    name: str
    point_kinds: tuple[str, ...]  # "block" | "attn_out" | "mlp_out"
    target_kind: str
    spread_power: float  # R / remaining ** spread_power

    def points(self, template: ArchitectureTemplate, z_layer: int) -> list[str]:
        return [self._name(template, kind, z_layer) for kind in self.point_kinds]

    def target(self, template: ArchitectureTemplate, z_layer: int) -> str:
        return self._name(template, self.target_kind, z_layer)

    def spread(self, remaining: int) -> float:
        return float(remaining) ** self.spread_power

    @staticmethod
    def _name(template: ArchitectureTemplate, kind: str, layer: int) -> str:
        return {"block": template.block_name, "attn_out": template.attn_out_name,
                "mlp_out": template.mlp_out_name}[kind](layer)
