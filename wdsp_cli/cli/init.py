"""``wdsp init``: create a workspace for a model."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import JsonOption, WorkspaceOption, emit_json, handles_errors, stdout


@handles_errors
def init(
    model: str = typer.Option("smollm2-135m-instruct", "--model", "-m",
                              help="The default model's name, a local save_pretrained folder, or a hub id."),
    dtype: str = typer.Option("float32", "--dtype", help="Weights dtype the model is edited in."),
    workspace: Path = WorkspaceOption,
    json: bool = JsonOption,
) -> None:
    """Create a workspace for MODEL: records where it comes from and its weights' fingerprint."""
    from ..checkout import describe_model
    from ..config import default_config_for
    from ..models import load_model
    from ..workspace import Workspace, find_root

    root = find_root(workspace)
    if (root / "workspace.json").exists():
        Workspace.open(root)  # a newer schema is reported as such
    loaded, _ = load_model(model, dtype=dtype)
    info = describe_model(model, loaded)
    ws = Workspace.create(root, info)
    suggested = {m: list(default_config_for(info["model_type"], info["num_layers"], m, info["hidden_size"]).layers)
                 for m in ("memit", "pmet")}
    document = {"workspace": str(ws.root), "model": info, "default_layers": suggested}
    if json:
        emit_json(document)
        return
    stdout.print(f"Created workspace [bold]{ws.root}[/] for {info['source']['source']} "
                 f"({info['model_type']}, {info['num_layers']} layers, {info['dtype']}, "
                 f"fingerprint {info['fingerprint'][7:19]}).")
    stdout.print(f"Next: wdsp covariance -w {ws.root}   (statistics for layers {suggested['memit']})")
