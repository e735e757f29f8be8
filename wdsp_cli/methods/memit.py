"""MEMIT (Meng et al. 2022b): optimise the residual stream h at the z-layer; spread the
residual R = Z - h evenly, R / (n - i), over the remaining edited layers; the closed-form
update Delta = R K^T (lambda C + K K^T)^-1 (``solve.update_factors``). Stateless."""

from .base import Method

METHOD = Method(name="memit", point_kinds=("block",), target_kind="block", spread_power=1.0)
