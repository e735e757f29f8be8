"""A weight diff: per-module updates in factor form, safetensors I/O, and fp32 application.

Public API:
    LayerUpdate(module, left [d_out, r], right [d_in, r], decay=1.0)
        W <- W_0 + decay * (W - W_0) + left @ right^T   (decay < 1 only under a norm budget)
    WeightDiff(updates, metadata)  .save(path) / WeightDiff.load(path) / .nbytes / .dense_nbytes
    WeightState(model)             float32 master copies of edited weights; .original_weights()

The model at iteration t is ``cast(W_t)``, W_j = W_0 + decay_j (W_{j-1} - W_0) + D_j in float32
for j = 1..t in order (W_0 the base weights in float32, the decay step skipped where it is 1), each
D_j computed as ``(left.double() @ right.double().T).float()``, then cast once to the model's
dtype. ``WeightState`` is the only code that writes edited weights, so a live edit, a resume and
a rollback give bit-identical weights. A diff with a decay is written as format v2, which older
versions refuse instead of misreading.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import EditError, WorkspaceError
from ..files.atomic import atomic_write_bytes
from .architectures import module_by_name, weight_out_in

if TYPE_CHECKING:  # torch is imported where it is used: opening a workspace stays torch-free
    import torch

FORMAT = "wdsp-factors-v1"
FORMAT_WITH_DECAY = "wdsp-factors-v2"  # v1 plus a "decay" list in the header


@dataclass(frozen=True)
class LayerUpdate:
    """Delta_module = left @ right^T; left [d_out, r], right [d_in, r], float32; ``decay``: the
    accumulated update W - W_0 is first multiplied by it (1.0: left alone)."""

    module: str
    left: torch.Tensor
    right: torch.Tensor
    decay: float = 1.0

    def __post_init__(self) -> None:
        import torch

        if not 0 < self.decay <= 1:
            raise EditError(f"decay {self.decay} of {self.module} is outside (0, 1]", hint="the diff is damaged")
        if self.left.ndim != 2 or self.right.ndim != 2 or self.left.shape[1] != self.right.shape[1]:
            raise EditError(f"malformed factors for {self.module}: {tuple(self.left.shape)} and "
                            f"{tuple(self.right.shape)}", hint="left is [d_out, r] and right [d_in, r]")
        object.__setattr__(self, "left", self.left.detach().to("cpu", torch.float32).contiguous())
        object.__setattr__(self, "right", self.right.detach().to("cpu", torch.float32).contiguous())

    def dense(self) -> torch.Tensor:
        """[d_out, d_in] float32, computed in float64."""
        return (self.left.double() @ self.right.double().T).float()

    def is_finite(self) -> bool:
        import torch

        return bool(torch.isfinite(self.left).all() and torch.isfinite(self.right).all())

    @property
    def nbytes(self) -> int:
        return self.left.numel() * 4 + self.right.numel() * 4

    @property
    def dense_nbytes(self) -> int:
        return self.left.shape[0] * self.right.shape[0] * 4


@dataclass(frozen=True)
class WeightDiff:
    """The updates of one edit iteration, with string metadata."""

    updates: tuple[LayerUpdate, ...]
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return sum(u.nbytes for u in self.updates)

    @property
    def dense_nbytes(self) -> int:
        return sum(u.dense_nbytes for u in self.updates)

    def is_finite(self) -> bool:
        return all(u.is_finite() for u in self.updates)

    def to_bytes(self) -> bytes:
        """The diff as a safetensors file, byte for byte the same for the same diff (sorted
        header, ``files.tensorfile``), so ``sha256sum`` can check that two runs agree."""
        from ..files.tensorfile import tensor_file_bytes

        tensors = {}
        for i, u in enumerate(self.updates):
            tensors[f"{i}.left"] = u.left
            tensors[f"{i}.right"] = u.right
        header = {"format": FORMAT, "modules": json.dumps([u.module for u in self.updates]),
                  "metadata": json.dumps(self.metadata, sort_keys=True)}
        if any(u.decay != 1.0 for u in self.updates):
            header.update(format=FORMAT_WITH_DECAY, decay=json.dumps([u.decay for u in self.updates]))
        return tensor_file_bytes(tensors, header)

    def save(self, path: str | Path) -> None:
        """Atomically write the diff as safetensors (refuses non-finite factors)."""
        if not self.is_finite():
            raise EditError("refusing to write a non-finite weight diff", hint="the edit diverged; lower v_lr")
        atomic_write_bytes(path, self.to_bytes())

    @classmethod
    def load(cls, path: str | Path) -> WeightDiff:
        """Read a diff written by ``save``; WorkspaceError (exit 6) if it is missing, torn or foreign."""
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as handle:
                header = handle.metadata() or {}
                if header.get("format") not in (FORMAT, FORMAT_WITH_DECAY):
                    raise WorkspaceError(f"{path} is not a wdsp weight diff ({header.get('format')!r})",
                                    hint="the file was not written by wdsp, or by a newer version")
                modules = json.loads(header["modules"])
                decays = json.loads(header["decay"]) if header["format"] == FORMAT_WITH_DECAY else [1.0] * len(modules)
                updates = tuple(LayerUpdate(m, handle.get_tensor(f"{i}.left"), handle.get_tensor(f"{i}.right"),
                                            float(decays[i])) for i, m in enumerate(modules))
                metadata = json.loads(header.get("metadata", "{}"))
        except (OSError, ValueError, KeyError, SafetensorError) as exc:
            raise WorkspaceError(f"cannot read weight diff {path}: {exc}",
                            hint="the file is missing or corrupt; roll back to an earlier iteration") from exc
        return cls(updates, metadata)


def _same_values(master, original) -> bool:
    import torch

    return bool(torch.equal(master, original.to(master.dtype)))


class WeightState:
    """Float32 master copies of the weights that edits touch; writes cast copies to the model."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.master: dict[str, torch.Tensor] = {}
        self.original: dict[str, torch.Tensor] = {}  # the weights as found, in the model's dtype

    def _master(self, module: str) -> torch.Tensor:
        if module not in self.master:
            import torch

            weight = weight_out_in(module_by_name(self.model, module))
            if weight.is_meta:
                raise EditError(f"the weights of {module} are offloaded (on the meta device), so they cannot be "
                                "edited in place",
                                hint="give the edited layers a real device in the device map (a GPU or 'cpu'); "
                                     "the other layers may stay offloaded")
            self.original[module] = weight.detach().to("cpu", copy=True)
            self.master[module] = weight.detach().to("cpu", torch.float32, copy=True)
        return self.master[module]

    @contextlib.contextmanager
    def original_weights(self) -> Iterator[None]:
        """Temporarily put the weights as they were before this state touched them back into the
        model (e.g. the base model, to compare against); the edited ones are restored on exit."""
        import torch

        try:
            with torch.no_grad():
                for module, value in self.original.items():
                    weight = weight_out_in(module_by_name(self.model, module))
                    weight.copy_(value.to(weight.device))
            yield
        finally:
            for module in self.original:
                self._write(module)

    def _write(self, module: str) -> None:
        import torch

        weight = weight_out_in(module_by_name(self.model, module))
        with torch.no_grad():
            weight.copy_(self.master[module].to(weight.device, weight.dtype))

    def drift(self, module: str) -> tuple[float, float]:
        """(||W - W_0||_F, ||W_0||_F) of ``module``'s float32 master."""
        master = self._master(module)
        base = self.original[module].float()
        return float((master - base).norm()), float(base.norm())

    def is_original(self) -> bool:
        """Whether every weight this state holds is still the base model's."""
        return all(_same_values(self.master[m], self.original[m]) for m in self.master)

    def decay(self, module: str, factor: float) -> None:
        """W <- W_0 + factor * (W - W_0) (a norm budget's shrink); nothing when ``factor`` is 1."""
        if factor == 1.0:
            return
        master = self._master(module)
        base = self.original[module].float()
        master.sub_(base).mul_(factor).add_(base)
        self._write(module)

    def apply(self, update: LayerUpdate) -> None:
        """Replay ``update``: its decay, then its factors (``add``)."""
        self.decay(update.module, update.decay)
        self.add(update)

    def add(self, update: LayerUpdate) -> None:
        """W += left @ right^T (a live edit, whose decay was applied before its targets were solved)."""
        master = self._master(update.module)
        dense = update.dense()
        if dense.shape != master.shape:
            raise EditError(f"update for {update.module} has shape {tuple(dense.shape)}, "
                            f"the weight is {tuple(master.shape)} ([d_out, d_in])",
                            hint="the diff belongs to another model")
        master += dense
        self._write(update.module)

    def apply_diffs(self, diffs: Iterable[WeightDiff]) -> None:
        for diff in diffs:
            for update in diff.updates:
                self.apply(update)

    def snapshot(self, modules: Iterable[str] = ()) -> dict[str, torch.Tensor]:
        """Copies of the masters of ``modules`` and of every module touched so far."""
        for module in modules:
            self._master(module)
        return {m: t.clone() for m, t in self.master.items()}

    def restore(self, snapshot: dict[str, torch.Tensor]) -> None:
        """Put every module of ``snapshot`` back to its snapshot value."""
        for module, value in snapshot.items():
            self.master[module] = value.clone()
            self._write(module)
