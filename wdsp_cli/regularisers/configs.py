"""The validated settings of the paper's two regularisers, WD and SP, and of the norm stabilisers
beyond the paper (torch-free: the command line checks them before it imports anything heavy).

Public API:
    WDConfig, SPConfig, NormConfig         frozen, validated on construction
    WD_MODES, WD_SCALES, WD_POINTS, SP_TARGETS, DEFAULT_WD_WEIGHT

Each is nested in ``config.EditConfig`` (``config.wd``, ``config.sp``, ``config.norm``). On disk and
in job ids the edit configuration stays flat (``wd``, ``wd_mode``, ..., ``sp``, ``sp_prune``, ...,
``norm_anchor``, ``norm_budget``): ``FIELDS`` maps
each setting to that flat name, and ``FLAGS`` to the ``wdsp edit`` option that sets it, so errors
name what the user typed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import InputError

WD_MODES = ("sinkhorn", "exact", "dirac")
WD_SCALES = ("nll", "pow10")
WD_POINTS = ("mlp", "all")
SP_TARGETS = ("delta", "layer-residuals")
# WD's weight when none is given, per scale: chosen on one SmolLM2 batch (docs/ablation/README.md).
DEFAULT_WD_WEIGHT = {"nll": 0.01, "pow10": 1.0}


def _flat(config, prefix: str) -> dict:
    """{flat name: value}: ``enabled`` is the switch itself (``wd``), the rest ``<prefix>_<field>``."""
    return {(prefix if f.name == "enabled" else f"{prefix}_{f.name}"): getattr(config, f.name)
            for f in dataclasses.fields(config)}


def _refuse(what: str, problems: list[str]) -> None:
    if problems:
        raise InputError(f"invalid {what} settings: " + "; ".join(problems),
                         hint="fix the named options (wdsp edit --help lists them)")


def _from_flat(cls, prefix: str, data: dict):
    names = {(prefix if f.name == "enabled" else f"{prefix}_{f.name}"): f.name for f in dataclasses.fields(cls)}
    return cls(**{field: data[flat] for flat, field in names.items() if flat in data})


@dataclass(frozen=True)
class WDConfig:
    """The Wasserstein distance constraint on the target optimisation (method.md section 3)."""

    enabled: bool = False
    """Add the WD term to each request's loss (``--wd``)."""
    mode: str = "exact"
    """"sinkhorn" (the paper), "exact" (sorted 1-D W2^2) or "dirac" (released code: 0.5||delta||^2)."""
    scale: str = "nll"
    """Dynamic lambda: "nll" (normalised to L_NLL, the paper) or "pow10" (released code)."""
    weight: float | None = None
    """Multiplies the dynamic lambda; None: 0.01 with scale "nll", 1.0 with "pow10" (measured,
    docs/ablation/README.md: weight 1 with "nll" halves efficacy on one SmolLM2 batch)."""
    reg: float = 0.05
    """Sinkhorn entropic regularisation, relative to the mean cost."""
    points: str = "mlp"
    """PMET: WD on delta_mlp only ("mlp") or also on delta_attn ("all"); MEMIT has one point."""
    counts_for_stopping: bool = False
    """Whether the WD term is part of the early-stopping test (released code: no)."""

    FLAGS = {"mode": "--wd-mode", "scale": "--wd-scale", "weight": "--wd-weight", "reg": "--wd-reg",
             "points": "--wd-points", "counts_for_stopping": "--set wd_counts_for_stopping="}

    def __post_init__(self) -> None:
        _refuse("WD", self.problems())

    def problems(self) -> list[str]:
        out = []
        for name, allowed in (("mode", WD_MODES), ("scale", WD_SCALES), ("points", WD_POINTS)):
            if getattr(self, name) not in allowed:
                out.append(f"{self.FLAGS[name]} {getattr(self, name)!r} is not one of {', '.join(allowed)}")
        if self.weight is not None and not self.weight >= 0:
            out.append(f"--wd-weight {self.weight:g} must be >= 0")
        if not self.reg > 0:
            out.append(f"--wd-reg {self.reg:g} must be > 0")
        return out

    @property
    def lambda_weight(self) -> float:
        """The weight on WD's dynamic lambda: ``weight`` or the default of ``scale``."""
        return self.weight if self.weight is not None else DEFAULT_WD_WEIGHT[self.scale]

    def to_flat(self) -> dict:
        return _flat(self, "wd")

    @classmethod
    def from_flat(cls, data: dict) -> WDConfig:
        return _from_flat(cls, "wd", data)


@dataclass(frozen=True)
class SPConfig:
    """Sparsification of each request's residual (method.md section 4)."""

    enabled: bool = False
    """Sparsify each request's residual after optimisation (``--sp``)."""
    prune: float = 0.7
    """Fraction of largest-magnitude entries kept (the paper's pr)."""
    dropout: float = 0.3
    """Dropout rate on the kept entries, rescaled by 1/(1 - dr) (the paper's dr; code: 0.1)."""
    target: str = "delta"
    """"delta" (the paper) or the variant "layer-residuals" (sparsify every layer's residual R)."""

    FLAGS = {"prune": "--sp-prune", "dropout": "--sp-dropout", "target": "--set sp_target="}

    def __post_init__(self) -> None:
        _refuse("SP", self.problems())

    def problems(self) -> list[str]:
        out = []
        if not 0 < self.prune <= 1:
            out.append(f"--sp-prune {self.prune:g} must be in (0, 1] (the fraction of entries kept)")
        if not 0 <= self.dropout < 1:
            out.append(f"--sp-dropout {self.dropout:g} must be in [0, 1) (the rate at which kept entries drop)")
        if self.target not in SP_TARGETS:
            out.append(f"sp_target {self.target!r} is not one of {', '.join(SP_TARGETS)}")
        return out

    def to_flat(self) -> dict:
        return _flat(self, "sp")

    @classmethod
    def from_flat(cls, data: dict) -> SPConfig:
        return _from_flat(cls, "sp", data)


@dataclass(frozen=True)
class NormConfig:
    """Bounds on the growth of the edited matrices, beyond the paper (docs/stabilisers/README.md):
    norm anchoring of the target values (``regularisers.norm_anchor``) and a budget on the
    accumulated update (``regularisers.norm_budget``). Both off by default."""

    anchor: bool = False
    """Rescale each request's target value z to the norm of the value the base model computes at
    the same point: z <- z * ||v_0|| / ||z|| (NAS, arXiv 2602.02543) (``--norm-anchor``)."""
    budget: float | None = None
    """Keep ||W_t - W_0||_F <= budget * ||W_0||_F for every edited matrix: each iteration first
    shrinks an accumulated update that has passed it (``--norm-budget``); None: no bound."""

    FLAGS = {"anchor": "--norm-anchor", "budget": "--norm-budget"}

    def __post_init__(self) -> None:
        _refuse("norm", self.problems())

    def problems(self) -> list[str]:
        if self.budget is not None and not self.budget > 0:
            return [f"--norm-budget {self.budget:g} must be > 0 (a fraction of ||W_0||_F, e.g. 0.05)"]
        return []

    def to_flat(self) -> dict:
        return _flat(self, "norm")

    @classmethod
    def from_flat(cls, data: dict) -> NormConfig:
        return _from_flat(cls, "norm", data)
