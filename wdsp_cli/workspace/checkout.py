"""The model at an iteration of a workspace: the base weights plus diffs 1..t.

Public API:
    describe_model(source, model) -> dict      what a workspace records about its base model
    load_base(workspace, device) -> (model, tokenizer)  the base model, refused if its fingerprint differs
    Checkout(model, tokenizer, state, iteration)  .advance_to(workspace, t)
    checkout(workspace, iteration) -> Checkout
    context_templates(workspace, model, tokenizer, config) -> (templates, new)   sampled once, then stored
    template_key(config) -> str

The weights at t are ``cast(base_fp32 + D_1 + ... + D_t)`` through ``deltas.WeightState``, the
same code path as a live edit, so a live edit, a resume and a rollback give identical bits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import EditConfig
from ..errors import ModelError
from ..model.architectures import num_layers
from ..model.weights import WeightState
from .store import Workspace


def describe_model(source: str, model, placement: dict | None = None) -> dict:
    """Source, fingerprint, dtype, shape and ``placement`` ({"device", "device_map"}) of a model."""
    from ..model.loading import describe_source, fingerprint

    config = model.config
    return {"source": describe_source(source), "fingerprint": fingerprint(model),
            "placement": placement or {"device": "cpu", "device_map": None},
            "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
            "model_type": config.model_type, "num_layers": num_layers(model),
            "hidden_size": getattr(config, "hidden_size", None) or getattr(config, "n_embd", None)}


def load_base(workspace: Workspace, device: str | None = None) -> tuple[Any, Any]:
    """The workspace's base model, placed as recorded at ``wdsp init`` (``placement``: a device or
    an accelerate device map) unless ``device`` overrides it; refused if its fingerprint differs."""
    from ..model.loading import (
        fingerprint,
        load_model,
        short_fingerprint,
        source_from_description,
    )

    info = workspace.model
    placement = info.get("placement") or {}
    where = {"device": device} if device is not None else \
        {"device": placement.get("device", "cpu"), "device_map": placement.get("device_map")}
    model, tokenizer = load_model(source_from_description(info["source"]), dtype=info["dtype"], **where)
    found = fingerprint(model)
    if found != info["fingerprint"]:
        raise ModelError(f"the model at {info['source']['source']!r} is not this workspace's base model "
                         f"(fingerprint {short_fingerprint(found)}, the workspace has "
                         f"{short_fingerprint(info['fingerprint'])})",
                         hint="restore the original weights, or start a new workspace for this model (wdsp init)")
    return model, tokenizer


@dataclass
class Checkout:
    model: Any
    tokenizer: Any
    state: WeightState
    iteration: int

    def advance_to(self, workspace: Workspace, iteration: int) -> None:
        """Apply diffs iteration+1 .. ``iteration`` (forward only: never subtract a diff)."""
        if iteration < self.iteration:
            raise ValueError(f"cannot go back from {self.iteration} to {iteration}; check out again")
        workspace.check_iteration(iteration)
        for t in range(self.iteration + 1, iteration + 1):
            self.state.apply_diffs([workspace.diff(t)])
            self.iteration = t


def checkout(workspace: Workspace, iteration: int | None = None, base=None) -> Checkout:
    """The model at ``iteration`` (default HEAD); ``base``: an already loaded (model, tokenizer)
    at iteration 0."""
    iteration = workspace.head if iteration is None else iteration
    workspace.check_iteration(iteration)
    model, tokenizer = base or load_base(workspace)
    out = Checkout(model, tokenizer, WeightState(model), 0)
    out.advance_to(workspace, iteration)
    return out


def template_key(config: EditConfig) -> str:
    return f"{config.context_template_count}/{config.context_template_length}/{config.seed}"


def context_templates(workspace: Workspace, model, tokenizer, config: EditConfig) -> tuple[list[str], bool]:
    """(MEMIT's context templates for ``config``, whether they are new). Sampled once with the
    config's seed, then stored by the caller (``Workspace.save_templates(template_key(config), ..)``)
    so every later edit, resume or re-edit uses the same ones. ``model`` must be the base model
    (iteration 0) when they are not stored yet."""
    from ..optimisation.prompts import generate_context_templates

    stored = workspace.templates(template_key(config))
    if stored is not None:
        return stored, False
    return generate_context_templates(model, tokenizer, config.context_template_count,
                                      config.context_template_length, config.seed), True
