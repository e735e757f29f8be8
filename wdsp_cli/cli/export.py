"""``wdsp export``: the model at an iteration as a Hugging Face folder."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import (
    JsonOption,
    WorkspaceOption,
    emit_json,
    fmt_bytes,
    handles_errors,
    stdout,
)


@handles_errors
def export(
    out: Path = typer.Argument(..., help="A new folder to write (safetensors + tokenizer)."),
    iteration: int = typer.Option(None, "--iteration", "-i", help="Export this iteration (default: HEAD)."),
    workspace: Path = WorkspaceOption,
    json: bool = JsonOption,
) -> None:
    """Write the edited model so that plain transformers loads it (AutoModelForCausalLM.from_pretrained)."""
    from ..jobs.export import run_export
    from .common import open_workspace

    document = run_export(open_workspace(workspace), out, iteration)
    if json:
        emit_json(document)
        return
    stdout.print(f"Exported iteration {document['iteration']} to {document['path']} ({fmt_bytes(document['bytes'])}).")
