"""Hyper-parameters of one edit, as frozen, validated dataclasses.

Public API:
    EditConfig            MEMIT/PMET/AlphaEdit hyper-parameters (field docs name the original hparam),
                          with the regularisers' settings nested: ``config.wd`` (WDConfig), ``config.sp`` (SPConfig)
    PRESETS               published presets and our SmolLM2 defaults, by name
    preset(name)          a preset by name (InputError lists the names)
    default_config_for(model_type, num_layers, method)  the preset to start from for a model
    flag(name)            the ``wdsp edit`` option that sets a flat field (for messages)
    parse_settings(["v_lr=0.2", ...]) -> {flat name: value}   ``--set NAME=VALUE``, typed by the field

Saved as sorted, flat JSON stamped with the package version (``to_json`` / ``from_json``): the WD
and SP settings appear as ``wd``, ``wd_mode``, ..., ``sp``, ``sp_prune``, ... as they always have,
so records, presets and job ids of existing workspaces stay valid. ``replace`` takes those flat
names too (``config.replace(wd=True, wd_mode="sinkhorn")``). Importing this module imports no torch.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from . import __version__
from .errors import InputError
from .methods import METHODS
from .regularisers.configs import NormConfig, SPConfig, WDConfig

AUTOCAST_DTYPES = (None, "bfloat16", "float16")
#: Settings added after 0.1.0, with their defaults: left out of job ids while at them (``identity``).
#: All but ``changed_fact_steps`` leave an edit as it was before them at that value; that one changes
#: only requests that change a fact in force, which had no special handling before (engine 3).
ADDED_LATER = {**NormConfig().to_flat(), "early_stop": "loss", "most_probable_steps": 3,
               "changed_fact_steps": 2.0}
EARLY_STOPS = ("loss", "most-probable")
# The command-line option of each field that has one; the others are set with --set NAME=VALUE.
FLAGS = {"method": "--method", "layers": "--layers", "v_num_grad_steps": "--steps", "seed": "--seed",
         "early_stop": "--early-stop",
         "autocast_dtype": "--autocast", "nullspace_threshold": "--nullspace-threshold",
         "alphaedit_l2": "--alphaedit-l2"}


def flag(name: str) -> str:
    """How a user sets the flat field ``name``: its option (``--steps``) or ``--set name=``."""
    return FLAGS.get(name) or {**{f"wd_{k}": v for k, v in WDConfig.FLAGS.items()},
                               **{f"sp_{k}": v for k, v in SPConfig.FLAGS.items()},
                               **{f"norm_{k}": v for k, v in NormConfig.FLAGS.items()}}.get(name, f"--set {name}=")


def _shown(name: str, value) -> str:
    """``--steps 0`` or ``--set v_lr=0``: the option as the user typed it."""
    option = flag(name)
    value = f"{value:g}" if isinstance(value, float) else value
    return f"{option}{value}" if option.endswith("=") else f"{option} {value}"


def _typed(name: str, text: str, default):
    """``text`` as the type of the field's default (bool, int, float, str; "none" clears an optional one)."""
    optional = name in ("wd_weight", "autocast_dtype", "norm_budget")
    if optional and text.strip().lower() in ("none", "null", ""):
        return None
    try:
        if isinstance(default, bool):
            if text.strip().lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return text.strip().lower() in ("true", "1", "yes")
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float) or name in ("wd_weight", "norm_budget"):
            return float(text)
    except ValueError:
        kind = "true or false" if isinstance(default, bool) else type(default or 0.0).__name__
        raise InputError(f"--set {name}={text}: not a {kind}", hint=f"e.g. --set {name}={default}") from None
    return text


def parse_settings(items) -> dict:
    """``["v_lr=0.2", "mom2_update_weight=5000"]`` -> {"v_lr": 0.2, ...}, typed by each field's default.
    Any flat field of EditConfig (``EditConfig().to_dict()``) but the layers and the method (``--layers``,
    ``--method``)."""
    defaults = EditConfig().to_dict()
    out = {}
    for item in items or ():
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or name not in defaults or name in ("layers", "method"):
            known = ", ".join(sorted(k for k in defaults if k not in ("layers", "method")))
            raise InputError(f"--set {item!r} is not NAME=VALUE for a known setting",
                             hint=f"e.g. --set v_lr=0.2; settings: {known}")
        out[name] = _typed(name, text.strip(), defaults[name])
    return out


@dataclass(frozen=True)
class EditConfig:
    method: str = "memit"
    """Editing algorithm, a name in ``methods.METHODS``: "memit", "pmet" or "alphaedit"."""
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
    """lambda in (lambda C + K K^T)^-1 (``mom2_update_weight``); MEMIT and PMET."""
    early_stop_loss: float = 5e-2
    """A request stops optimising once its loss is below this (MEMIT's 5e-2)."""
    early_stop: str = "loss"
    """"loss" (MEMIT: only ``early_stop_loss``) or "most-probable" (ENCORE's MPES: also stop once the
    targets have been the top-1 prediction on every prompt at ``most_probable_steps`` + 1 forwards)."""
    most_probable_steps: int = 3
    """MPES's k: forwards after the first at which the targets are top-1 (ENCORE: 3 for GPT2-XL, 1 for Llama3-8B)."""
    changed_fact_steps: float = 2.0
    """A request that changes a fact in force (edited before with another target: docs/conflicts.md)
    gets this many times ``v_num_grad_steps``: it starts from the old edit's value, further away."""
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
    wd: WDConfig = field(default_factory=WDConfig)
    """The Wasserstein distance constraint (the paper's WD); flat: ``wd``, ``wd_mode``, ..."""
    sp: SPConfig = field(default_factory=SPConfig)
    """Sparsification of the residuals (the paper's SP); flat: ``sp``, ``sp_prune``, ..."""
    norm: NormConfig = field(default_factory=NormConfig)
    """Norm anchoring and the norm budget (beyond the paper); flat: ``norm_anchor``, ``norm_budget``."""
    nullspace_threshold: float = 2e-2
    """AlphaEdit: eigenvalues of C below this span the null space projected onto (``nullspace_threshold``)."""
    alphaedit_l2: float = 10.0
    """AlphaEdit: alpha in (K K^T P + K_p K_p^T P + alpha I)^-1 (``L2``)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(int(x) for x in self.layers))
        if not isinstance(self.wd, WDConfig) or not isinstance(self.sp, SPConfig) \
                or not isinstance(self.norm, NormConfig):
            raise TypeError("EditConfig.wd, .sp and .norm take WDConfig, SPConfig and NormConfig; use "
                            "EditConfig.from_dict or .replace(wd=True, wd_mode=...) for the flat names")
        problems = []
        if self.method not in METHODS:
            problems.append(f"--method {self.method!r} is not one of {', '.join(METHODS)}")
        if not self.layers or list(self.layers) != sorted(set(self.layers)) or min(self.layers) < 0:
            problems.append(f"--layers {','.join(map(str, self.layers))} must be distinct, ascending and >= 0")
        for name in ("v_lr", "clamp_norm_factor", "mom2_update_weight", "early_stop_loss"):
            if not getattr(self, name) > 0:
                problems.append(f"{_shown(name, getattr(self, name))} must be > 0")
        for name in ("kl_factor", "v_weight_decay"):
            if getattr(self, name) < 0:
                problems.append(f"{_shown(name, getattr(self, name))} must be >= 0")
        if self.early_stop not in EARLY_STOPS:
            problems.append(f"--early-stop {self.early_stop!r} is not one of {', '.join(EARLY_STOPS)}")
        if self.most_probable_steps < 0:
            problems.append(f"--set most_probable_steps={self.most_probable_steps} must be >= 0")
        if not self.changed_fact_steps >= 1:
            problems.append(f"--set changed_fact_steps={self.changed_fact_steps} must be >= 1")
        if self.v_num_grad_steps < 1:
            problems.append(f"--steps {self.v_num_grad_steps} must be >= 1")
        if self.autocast_dtype not in AUTOCAST_DTYPES:
            problems.append(f"--autocast {self.autocast_dtype} is not one of bfloat16, float16, none")
        for name in ("nullspace_threshold", "alphaedit_l2"):
            if not getattr(self, name) > 0:
                problems.append(f"{_shown(name, getattr(self, name))} must be > 0")
        if self.kl_prompt.count("{}") != 1:
            problems.append(f'--set kl_prompt={self.kl_prompt!r} needs exactly one "{{}}" for the subject')
        if problems:
            raise InputError("invalid edit configuration: " + "; ".join(problems),
                             hint="fix the named options (wdsp edit --help lists them)")

    @property
    def z_layer(self) -> int:
        return self.layers[-1]

    def replace(self, **changes) -> EditConfig:
        """A copy with ``changes``, by flat name (``wd_mode="sinkhorn"``) or nested (``wd=WDConfig(...)``)."""
        flat = {}
        for name, value in changes.items():
            if isinstance(value, (WDConfig, SPConfig, NormConfig)):
                flat.update(value.to_flat())
            else:
                flat[name] = value
        return EditConfig.from_dict({**self.to_dict(), **flat})

    def to_dict(self) -> dict:
        """The flat form (what config.json, records and job ids hold)."""
        top = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("wd", "sp", "norm")}
        return {**top, "layers": list(self.layers), **self.wd.to_flat(), **self.sp.to_flat(), **self.norm.to_flat()}

    def identity(self) -> dict:
        """``to_dict`` without the settings added since 0.1.0 while they are off (``ADDED_LATER``):
        what a job id hashes, so jobs and records made before a setting existed keep their ids."""
        return {k: v for k, v in self.to_dict().items() if not (k in ADDED_LATER and v == ADDED_LATER[k])}

    def to_json(self) -> str:
        return json.dumps({"wdsp_version": __version__, **self.to_dict()}, sort_keys=True, indent=2)

    @classmethod
    def from_dict(cls, data: dict) -> EditConfig:
        data = {k: v for k, v in data.items() if k != "wdsp_version"}
        top = {f.name for f in dataclasses.fields(cls)} - {"wd", "sp", "norm"}
        nested = set(WDConfig().to_flat()) | set(SPConfig().to_flat()) | set(NormConfig().to_flat())
        unknown = sorted(set(data) - top - nested)
        if unknown:
            raise InputError(f"unknown configuration field(s): {', '.join(unknown)}",
                             hint=f"known fields: {', '.join(sorted(top | nested))}")
        return cls(**{k: v for k, v in data.items() if k in top},
                   wd=WDConfig.from_flat(data), sp=SPConfig.from_flat(data), norm=NormConfig.from_flat(data))

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
