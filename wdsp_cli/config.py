"""Hyper-parameters of one editing method, as frozen, validated dataclasses.

Public API:
    EditConfig            MEMIT/PMET hyper-parameters (field docs name the original hparam)
    PRESETS               published presets and our SmolLM2 defaults, by name
    preset(name)          a preset by name (InputError lists the names)
    default_config_for(model_type, num_layers, method)  the preset to start from for a model

Saved as sorted JSON stamped with the package version (``to_json`` / ``from_json``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from . import __version__
from .errors import InputError

METHODS = ("memit", "pmet", "alphaedit")
WD_MODES = ("sinkhorn", "exact", "dirac")
WD_SCALES = ("nll", "pow10")
WD_POINTS = ("mlp", "all")
SP_TARGETS = ("delta", "layer-residuals")
AUTOCAST_DTYPES = (None, "bfloat16", "float16")
# WD's weight when none is given, per scale: chosen on one SmolLM2 batch (docs/ablation/README.md).
DEFAULT_WD_WEIGHT = {"nll": 0.01, "pow10": 1.0}


@dataclass(frozen=True)
class EditConfig:
    method: str = "memit"
    """Editing algorithm: "memit", "pmet" or "alphaedit"."""
    layers: tuple[int, ...] = (3, 4, 5, 6, 7)
    """Edited layers L (MEMIT ``layers``); the last one is the z-layer l_n."""
    v_lr: float = 0.5
    """Adam learning rate of the target-value optimisation (``v_lr``)."""
    v_num_grad_steps: int = 25
    """Forward passes of the target-value optimisation, at most steps - 1 updates (``v_num_grad_steps``)."""
    clamp_norm_factor: float = 0.75
    """||delta|| <= clamp * ||h|| after each step (``clamp_norm_factor``)."""
    kl_factor: float = 0.0625
    """Weight of KL(P_delta || P_0) on "{subject} is a" (``kl_factor``)."""
    v_weight_decay: float = 0.5
    """Weight of ||delta|| / ||h||^2 (``v_weight_decay``)."""
    mom2_update_weight: float = 15000.0
    """lambda in (lambda C + K K^T)^-1 (``mom2_update_weight``)."""
    early_stop_loss: float = 5e-2
    """A request stops optimising once its loss is below this (MEMIT's 5e-2)."""
    context_template_count: int = 5
    """Generated context templates besides the bare "{}" (MEMIT: 5)."""
    context_template_length: int = 10
    """Tokens per generated context template, prefix included (MEMIT: 10)."""
    kl_prompt: str = "{} is a"
    """Essence-drift prompt for the KL term (``{}`` = subject)."""
    seed: int = 0
    """Seeds context-template sampling and SP's dropout (mixed with the iteration number)."""
    autocast_dtype: str | None = None
    """Run the target optimisation's forward passes under torch.autocast (e.g. "bfloat16")."""
    wd: bool = False
    """Add the Wasserstein distance constraint (the paper's WD) to the target optimisation."""
    wd_mode: str = "exact"
    """"sinkhorn" (the paper), "exact" (sorted 1-D W2^2) or "dirac" (released code: 0.5||delta||^2)."""
    wd_scale: str = "nll"
    """Dynamic lambda: "nll" (normalised to L_NLL, the paper) or "pow10" (released code)."""
    wd_weight: float | None = None
    """Multiplies the dynamic lambda; None: 0.01 with scale "nll", 1.0 with "pow10" (measured,
    docs/ablation/README.md: weight 1 with "nll" halves efficacy on one SmolLM2 batch)."""
    wd_reg: float = 0.05
    """Sinkhorn entropic regularisation, relative to the mean cost."""
    wd_points: str = "mlp"
    """PMET: WD on delta_mlp only ("mlp") or also on delta_attn ("all"); MEMIT has one point."""
    wd_counts_for_stopping: bool = False
    """Whether the WD term is part of the early-stopping test (released code: no)."""
    sp: bool = False
    """Sparsify each request's residual after optimisation (the paper's SP)."""
    sp_prune: float = 0.7
    """Fraction of largest-magnitude entries kept (the paper's pr)."""
    sp_dropout: float = 0.3
    """Dropout rate on the kept entries, rescaled by 1/(1 - dr) (the paper's dr; code: 0.1)."""
    sp_target: str = "delta"
    """"delta" (the paper) or the variant "layer-residuals" (sparsify every layer's residual R)."""
    nullspace_threshold: float = 2e-2
    """AlphaEdit: eigenvalues of C below this span the null space projected onto (``nullspace_threshold``)."""
    alphaedit_l2: float = 10.0
    """AlphaEdit: alpha in (K K^T P + K_p K_p^T P + alpha I)^-1 (``L2``)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(int(x) for x in self.layers))
        problems = []
        if self.method not in METHODS:
            problems.append(f"method {self.method!r} is not one of {', '.join(METHODS)}")
        if not self.layers or list(self.layers) != sorted(set(self.layers)) or min(self.layers) < 0:
            problems.append(f"layers {list(self.layers)} must be distinct, ascending and >= 0")
        for name in ("v_lr", "clamp_norm_factor", "mom2_update_weight", "early_stop_loss"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0")
        for name in ("kl_factor", "v_weight_decay"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0")
        if self.v_num_grad_steps < 1:
            problems.append("v_num_grad_steps must be >= 1")
        for name, allowed in (("wd_mode", WD_MODES), ("wd_scale", WD_SCALES), ("wd_points", WD_POINTS),
                              ("sp_target", SP_TARGETS), ("autocast_dtype", AUTOCAST_DTYPES)):
            if getattr(self, name) not in allowed:
                problems.append(f"{name} {getattr(self, name)!r} is not one of {allowed}")
        if not 0 < self.sp_prune <= 1 or not 0 <= self.sp_dropout < 1:
            problems.append("sp_prune must be in (0, 1] and sp_dropout in [0, 1)")
        if (self.wd_weight is not None and not self.wd_weight >= 0) or not self.wd_reg > 0:
            problems.append("wd_weight must be >= 0 and wd_reg > 0")
        if not self.nullspace_threshold > 0 or not self.alphaedit_l2 > 0:
            problems.append("nullspace_threshold and alphaedit_l2 must be > 0")
        if self.kl_prompt.count("{}") != 1:
            problems.append('kl_prompt needs exactly one "{}" for the subject')
        if problems:
            raise InputError("invalid edit configuration: " + "; ".join(problems),
                             hint="fix the named fields (see `wdsp_cli.config.EditConfig`)")

    @property
    def wd_lambda_weight(self) -> float:
        """The weight on WD's dynamic lambda: ``wd_weight`` or the default of ``wd_scale``."""
        if self.wd_weight is not None:
            return self.wd_weight
        return DEFAULT_WD_WEIGHT[self.wd_scale]

    @property
    def z_layer(self) -> int:
        return self.layers[-1]

    def replace(self, **changes) -> EditConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "layers": list(self.layers)}

    def to_json(self) -> str:
        return json.dumps({"wdsp_version": __version__, **self.to_dict()}, sort_keys=True, indent=2)

    @classmethod
    def from_dict(cls, data: dict) -> EditConfig:
        data = {k: v for k, v in data.items() if k != "wdsp_version"}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"unknown configuration field(s): {', '.join(unknown)}",
                             hint=f"known fields: {', '.join(sorted(known))}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> EditConfig:
        return cls.from_dict(json.loads(text))


# Published presets. Sources: MEMIT (Meng et al. 2022b) hparams/MEMIT/*.json as summarised
# in shared/docs/method.md; PMET (Li et al. 2023) GPT-J settings, ibid.
_MEMIT_GPTJ = EditConfig(method="memit", layers=(3, 4, 5, 6, 7, 8), v_lr=0.5, v_num_grad_steps=25,
                         clamp_norm_factor=0.75, kl_factor=0.0625, v_weight_decay=0.5,
                         mom2_update_weight=15000.0)

PRESETS: dict[str, EditConfig] = {
    "memit-gptj": _MEMIT_GPTJ,
    "memit-gpt2-xl": _MEMIT_GPTJ.replace(layers=(13, 14, 15, 16, 17), v_num_grad_steps=20,
                                         mom2_update_weight=20000.0),
    "memit-llama3-8b": _MEMIT_GPTJ.replace(layers=(4, 5, 6, 7, 8), v_lr=0.1),
    "pmet-gptj": _MEMIT_GPTJ.replace(method="pmet", v_lr=0.2, v_num_grad_steps=30, kl_factor=1.0,
                                     mom2_update_weight=6000.0),
    # Ours, chosen by measurement on SmolLM2-135M-Instruct (30 layers): docs/hyperparameters.md.
    "memit-smollm2": _MEMIT_GPTJ.replace(layers=(4, 5, 6, 7, 8), mom2_update_weight=2000.0),
    "pmet-smollm2": _MEMIT_GPTJ.replace(method="pmet", layers=(4, 5, 6, 7, 8), clamp_norm_factor=4.0,
                                        mom2_update_weight=1000.0),
    # AlphaEdit (Fang et al. 2025): MEMIT's target optimisation with the published layers and v_lr,
    # null-space threshold 2e-2 and L2 10 (method.md section 5); mom2_update_weight is unused.
    "alphaedit-gptj": _MEMIT_GPTJ.replace(method="alphaedit"),
    "alphaedit-llama3-8b": _MEMIT_GPTJ.replace(method="alphaedit", layers=(4, 5, 6, 7, 8), v_lr=0.1),
    "alphaedit-smollm2": _MEMIT_GPTJ.replace(method="alphaedit", layers=(4, 5, 6, 7, 8)),
}


def preset(name: str) -> EditConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise InputError(f"unknown preset {name!r}", hint=f"choose one of {', '.join(sorted(PRESETS))}") from None


def default_config_for(model_type: str, num_layers: int, method: str = "memit",
                       hidden_size: int | None = None) -> EditConfig:
    """The configuration to start from for a model: a matching preset, else MEMIT's depth rule.

    SmolLM2-135M (llama, 30 layers, hidden 576) -> ``{method}-smollm2``; GPT-J (28 layers) ->
    ``{method}-gptj`` (PMET) or ``memit-gptj``; GPT-2 XL (48 layers) -> ``memit-gpt2-xl``; Llama 3 8B
    (32 layers, hidden 4096) -> ``memit-llama3-8b``. Any other model: the SmolLM2 preset of the
    method with its layers moved to the same relative depth (layers 4-8 of 30 start at 13%),
    min(5, num_layers // 2) consecutive layers (at least one).
    """
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}", hint=f"choose one of {', '.join(METHODS)}")
    if num_layers < 1:
        raise InputError(f"a model with {num_layers} layers cannot be edited", hint="check the model's config")
    named = {("llama", 30, 576): "smollm2", ("gptj", 28, None): "gptj", ("gpt2", 48, None): "gpt2-xl",
             ("llama", 32, 4096): "llama3-8b"}
    for (kind, depth, width), suffix in named.items():
        if kind == model_type and depth == num_layers and width in (None, hidden_size):
            if f"{method}-{suffix}" in PRESETS:
                return PRESETS[f"{method}-{suffix}"]
    base = PRESETS[f"{method}-smollm2"]
    count = max(1, min(5, num_layers // 2))
    start = min(round(0.13 * num_layers), num_layers - count)
    return base.replace(layers=tuple(range(start, start + count)))
