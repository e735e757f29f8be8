"""AlphaEdit (Fang et al., ICLR 2025): MEMIT's targets and spreading; the update is projected
onto the null space of the preserved keys' statistics and regularised by earlier batches' keys
(``solve.projected_update_factors``, ``nullspace``)."""

from .base import MethodSpec

ALPHAEDIT = MethodSpec(name="alphaedit", point_kinds=("block",), target_kind="block", spread_power=1.0)
