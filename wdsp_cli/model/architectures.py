"""Module templates per model family, and weight orientation by module type.

Public API:
    ArchitectureTemplate        where a family keeps its blocks, MLP and attention outputs
    TEMPLATES                   the supported families
    template_for(model)         the template of a loaded model (ModelError if unsupported)
    module_by_name(model, name) the submodule called ``name``
    weight_out_in(module)       a module's weight as a [d_out, d_in] view
    add_to_weight_(module, delta_out_in)  W += delta, whatever the storage orientation

MEMIT and PMET edit the MLP *output* projection W_l of layer l; its input is the key
k and its output joins the residual stream. GPT-2 stores that projection as a
transposed ``Conv1D`` ([d_in, d_out]); every other family uses ``nn.Linear``
([d_out, d_in]). Orientation is decided by module type, never by comparing shapes,
since a square weight fits both ways.

Adding a family: append an ``ArchitectureTemplate`` naming its ``model_type``s and
the dotted paths below; the block must be additive (h_out = h_in + attn + mlp).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ModelError

if TYPE_CHECKING:  # torch is imported where it is used: opening a workspace stays torch-free
    import torch


@dataclass(frozen=True)
class ArchitectureTemplate:
    """Dotted module paths of one model family; ``{}`` is the layer index."""

    family: str
    model_types: tuple[str, ...]
    block: str  # the decoder block; its output is the residual stream h_l
    mlp_out: str  # the MLP output projection W_l (edited); its input is the key k
    attn_out: str  # the attention output projection (PMET optimises its output)

    def block_name(self, layer: int) -> str:
        return self.block.format(layer)

    def mlp_out_name(self, layer: int) -> str:
        return f"{self.block.format(layer)}.{self.mlp_out}"

    def attn_out_name(self, layer: int) -> str:
        return f"{self.block.format(layer)}.{self.attn_out}"


TEMPLATES: tuple[ArchitectureTemplate, ...] = (
    ArchitectureTemplate(
        family="llama",
        model_types=("llama", "mistral", "qwen2", "qwen3", "smollm3"),
        block="model.layers.{}",
        mlp_out="mlp.down_proj",
        attn_out="self_attn.o_proj",
    ),
    ArchitectureTemplate(
        family="gpt2",
        model_types=("gpt2",),
        block="transformer.h.{}",
        mlp_out="mlp.c_proj",
        attn_out="attn.c_proj",
    ),
    ArchitectureTemplate(
        family="gptj",
        model_types=("gptj",),
        block="transformer.h.{}",
        mlp_out="mlp.fc_out",
        attn_out="attn.out_proj",
    ),
    ArchitectureTemplate(
        family="gpt_neox",
        model_types=("gpt_neox",),
        block="gpt_neox.layers.{}",
        mlp_out="mlp.dense_4h_to_h",
        attn_out="attention.dense",
    ),
)


def supported_model_types() -> list[str]:
    return sorted(t for tpl in TEMPLATES for t in tpl.model_types)


def template_for(model: torch.nn.Module) -> ArchitectureTemplate:
    """The template for ``model.config.model_type``; ModelError names the supported ones."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    for tpl in TEMPLATES:
        if model_type in tpl.model_types:
            return tpl
    raise ModelError(
        f"unsupported model type {model_type!r}; supported: {', '.join(supported_model_types())}",
        hint="add an ArchitectureTemplate for it in wdsp_cli/architectures.py "
        "(block, mlp_out and attn_out module paths); its blocks must be additive residual blocks",
    )


def num_layers(model: torch.nn.Module) -> int:
    config = model.config
    for attr in ("num_hidden_layers", "n_layer", "num_layers"):
        if hasattr(config, attr):
            return int(getattr(config, attr))
    raise ModelError("cannot tell the number of layers of this model", hint="set config.num_hidden_layers")


def module_by_name(model: torch.nn.Module, name: str) -> torch.nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError as exc:
        raise ModelError(
            f"module {name!r} not found in {type(model).__name__}",
            hint="the model's layout differs from its family template in wdsp_cli/architectures.py",
        ) from exc


def _is_conv1d(module: torch.nn.Module) -> bool:
    # transformers' Conv1D (GPT-2 family) stores weight as [d_in, d_out].
    return type(module).__name__ == "Conv1D"


def weight_out_in(module: torch.nn.Module) -> torch.Tensor:
    """The weight as a [d_out, d_in] view (a transpose view for Conv1D)."""
    import torch

    if _is_conv1d(module):
        return module.weight.T
    if isinstance(module, torch.nn.Linear):
        return module.weight
    raise ModelError(
        f"cannot edit a {type(module).__name__}: expected nn.Linear or Conv1D",
        hint="point the template's mlp_out at the MLP output projection",
    )
