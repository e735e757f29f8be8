"""Editing methods, one file each, registered by name.

Public API:
    METHODS             the registered names (importing this package imports no torch)
    method(name)        the ``base.Method`` of a name (InputError lists the names)

Adding a method: a file here defining ``METHOD`` (a ``base.Method``, or a subclass that overrides
``update`` and the state hooks), and its name in ``_REGISTRY``.
"""

from __future__ import annotations

import importlib

from ..errors import InputError

_REGISTRY = {"memit": "memit", "pmet": "pmet", "alphaedit": "alphaedit"}  # name -> module in this package
METHODS = tuple(_REGISTRY)


def method(name: str):
    """The registered method ``name``."""
    try:
        module = _REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown method {name!r}", hint=f"choose one of {', '.join(METHODS)}") from None
    return importlib.import_module(f"{__name__}.{module}").METHOD


__all__ = ["METHODS", "method"]
