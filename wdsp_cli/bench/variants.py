"""A benchmark's variants: the edit settings a run adds to its method's, named by parts joined by "+".

Public API:
    VARIANT_PARTS                 {"wd": {"wd": True}, "sp": ..., "anchor": ..., "mpes": ..., "bf16": ...}
    variant_settings(name) -> dict  "none", or parts joined by "+": wd, sp, anchor, mpes, bf16, budget<R> (e.g.
                                  "wd+sp", "anchor", "budget0.05", "wd+sp+anchor") -> edit settings
    variant_label(name) -> str    "" for "none", else "+WD+SP", "+ANCHOR", ... (after the method's name)
"""

from __future__ import annotations

from ..errors import InputError

#: The parts a variant is made of (joined by "+"); "budget" takes its fraction: "budget0.05".
VARIANT_PARTS: dict[str, dict] = {"wd": {"wd": True}, "sp": {"sp": True}, "anchor": {"norm_anchor": True},
                                  "mpes": {"early_stop": "most-probable"},
                                  # the target optimisation under autocast(bfloat16): fast only where the
                                  # hardware has the type (docs/precision.md); results change slightly
                                  "bf16": {"autocast_dtype": "bfloat16"}}


def variant_settings(name: str) -> dict:
    """The edit settings of a variant: "none" -> {}; "wd+sp+budget0.05" -> {"wd": True, "sp": True,
    "norm_budget": 0.05}. InputError for an unknown part."""
    settings: dict = {}
    for part in [] if name == "none" else name.split("+"):
        if part in VARIANT_PARTS:
            settings.update(VARIANT_PARTS[part])
        elif part.startswith("budget") and _is_number(part[len("budget"):]):
            settings["norm_budget"] = float(part[len("budget"):])
        else:
            raise InputError(f"unknown variant {name!r} (part {part!r})",
                             hint="none, or parts joined by '+': wd, sp, anchor, mpes, bf16, budget<fraction> "
                                  "(e.g. wd+sp, anchor, budget0.05)")
    return settings


def _is_number(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False


def variant_label(name: str) -> str:
    """"" for "none", else "+WD+SP", "+ANCHOR", "+BUDGET0.05" (appended to the method's name)."""
    return "" if name == "none" else "".join("+" + part.upper() for part in name.split("+"))
