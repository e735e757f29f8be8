"""Exporting the model at an iteration as a Hugging Face folder that plain transformers loads.

Public API:
    run_export(workspace, out, iteration=None) -> dict

Writes ``save_pretrained`` safetensors weights, the tokenizer and ``wdsp-export.json`` (the
workspace, iteration and base fingerprint) into a temporary sibling folder, then renames it to
``out`` (``files.atomic``: every file fsynced, then the folder renamed and its parent
fsynced): a crash never leaves a half-written model. Refuses an existing ``out``.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from ..errors import InputError
from ..files.atomic import atomic_write_text, fsync_tree, rename_folder
from ..workspace.store import Workspace, now


def run_export(workspace: Workspace, out: str | os.PathLike, iteration: int | None = None) -> dict:
    from ..workspace.checkout import checkout

    out = Path(out).expanduser().absolute()
    if out.exists():
        raise InputError(f"{out} already exists", hint="export into a new folder, or remove that one first")
    t = workspace.head if iteration is None else iteration
    workspace.check_iteration(t)
    current = checkout(workspace, t)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        current.model.save_pretrained(tmp, safe_serialization=True)
        current.tokenizer.save_pretrained(tmp)
        info = {"workspace": str(workspace.root), "iteration": t, "base_fingerprint": workspace.model["fingerprint"],
                "exported_at": now()}
        atomic_write_text(tmp / "wdsp-export.json", json.dumps(info, indent=2, sort_keys=True))
        fsync_tree(tmp)
        rename_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    size = sum(p.stat().st_size for p in out.iterdir())
    return {**info, "path": str(out), "bytes": size}
