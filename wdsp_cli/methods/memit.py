"""MEMIT (Meng et al. 2022b): optimise the residual stream h at the z-layer; spread the
residual R = Z - h evenly, R / (n - i), over the remaining edited layers."""

from .base import MethodSpec

MEMIT = MethodSpec(name="memit", point_kinds=("block",), target_kind="block", spread_power=1.0)
