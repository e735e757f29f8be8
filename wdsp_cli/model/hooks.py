"""A tiny trace/edit layer over PyTorch forward hooks that always removes its hooks.

Public API:
    hooks(model, inputs=..., outputs=..., edits=..., stop_after=...)  context manager -> Trace
    StopForward    raised by the ``stop_after`` hook to end a forward pass early
    run(model, **batch)  call the model, treating StopForward as a normal end (returns None then)

Usage::

    with hooks(model, inputs=["model.layers.3.mlp.down_proj"], stop_after="model.layers.3") as trace:
        run(model, **batch)
    keys = trace.inputs["model.layers.3.mlp.down_proj"]   # [batch, seq, d_in]

    def add(output):                                       # output: [batch, seq, d] -> same
        return output + bump
    with hooks(model, edits={"model.layers.8": add}):
        logits = model(**batch).logits

Edits see and return the module's primary output tensor (the first element when a
module returns a tuple). Hooks are removed on exit, also when the body raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from .architectures import module_by_name

EditFn = Callable[[torch.Tensor], torch.Tensor]


class StopForward(Exception):
    """Ends a forward pass once the last needed module has run."""


@dataclass
class Trace:
    """What a hooked forward pass recorded: module name -> tensor."""

    inputs: dict[str, torch.Tensor] = field(default_factory=dict)
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)


def _primary(output):
    return output[0] if isinstance(output, tuple) else output


def _replace_primary(output, new: torch.Tensor):
    return (new, *output[1:]) if isinstance(output, tuple) else new


@contextmanager
def hooks(
    model: torch.nn.Module,
    inputs: Iterable[str] = (),
    outputs: Iterable[str] = (),
    edits: Mapping[str, EditFn] | None = None,
    stop_after: str | None = None,
) -> Iterator[Trace]:
    """Record module inputs/outputs, rewrite outputs, and optionally stop early.

    An edited module's recorded output is the edited one. ``stop_after`` raises
    StopForward after its edits and records: call the model through ``run``.
    """
    trace = Trace()
    edits = dict(edits or {})
    handles = []
    try:
        for name in inputs:
            def record_input(module, args, kwargs, _name=name):
                trace.inputs[_name] = args[0] if args else next(iter(kwargs.values()))
            handles.append(module_by_name(model, name).register_forward_pre_hook(record_input, with_kwargs=True))
        for name in set(outputs) | set(edits) | ({stop_after} if stop_after else set()):
            record = name in set(outputs)
            edit = edits.get(name)
            stop = name == stop_after

            def after(module, args, output, _name=name, _record=record, _edit=edit, _stop=stop):
                if _edit is not None:
                    output = _replace_primary(output, _edit(_primary(output)))
                if _record:
                    trace.outputs[_name] = _primary(output)
                if _stop:
                    raise StopForward(_name)
                return output

            handles.append(module_by_name(model, name).register_forward_hook(after))
        yield trace
    finally:
        for handle in handles:
            handle.remove()


def run(model: torch.nn.Module, **batch):
    """``model(**batch)``, or None when a ``stop_after`` hook ended it early."""
    try:
        return model(**batch)
    except StopForward:
        return None
