"""Editing methods: which values are optimised and how residuals spread over layers.

Public API:
    MethodSpec          the per-method choices the shared batch algorithm (``editing``) needs
    method_spec(name)   "memit" | "pmet" | "alphaedit"
"""

from __future__ import annotations

from ..errors import InputError
from .alphaedit import ALPHAEDIT
from .base import MethodSpec
from .memit import MEMIT
from .pmet import PMET

METHOD_SPECS: dict[str, MethodSpec] = {m.name: m for m in (MEMIT, PMET, ALPHAEDIT)}


def method_spec(name: str) -> MethodSpec:
    try:
        return METHOD_SPECS[name]
    except KeyError:
        raise InputError(f"unknown method {name!r}", hint=f"choose one of {', '.join(METHOD_SPECS)}") from None


__all__ = ["METHOD_SPECS", "MethodSpec", "method_spec"]
