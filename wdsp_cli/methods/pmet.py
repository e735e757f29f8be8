"""PMET (Li et al. 2023): optimise the z-layer's attention and MLP output projections'
outputs jointly (delta_attn, delta_mlp); only MLP output weights are written, from
R = Z_mlp - (MLP output at l_n), spread with a square root, R / sqrt(n - i); MEMIT's
closed-form update. Stateless."""

from .base import Method

METHOD = Method(name="pmet", point_kinds=("attn_out", "mlp_out"), target_kind="mlp_out", spread_power=0.5)
