"""``wdsp init``: create a workspace for a model."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import JsonOption, WorkspaceOption, emit_json, handles_errors, stdout


def parse_device_map(text: str | None):
    import json as jsonlib

    from ..errors import InputError

    if text is None or text in ("auto", "balanced", "balanced_low_0", "sequential"):
        return text
    try:
        value = jsonlib.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise InputError(f"--device-map {text!r} is neither auto/balanced/sequential nor a JSON object",
                         hint='e.g. --device-map auto, or --device-map \'{"model.layers": 0, "lm_head": 1}\'')
    return value


@handles_errors
def init(
    model: str = typer.Option("smollm2-135m-instruct", "--model", "-m",
                              help="The default model's name, a local save_pretrained folder, or a hub id."),
    dtype: str = typer.Option("float32", "--dtype", help="Weights dtype the model is edited in."),
    device: str = typer.Option("cpu", "--device", help="Device to load the model on (e.g. cuda:0)."),
    device_map: str = typer.Option(None, "--device-map",
                                   help='Place the model across devices with accelerate: "auto", "balanced", or a '
                                        'JSON object {module: device} (docs/scale.md).'),
    workspace: Path = WorkspaceOption,
    json: bool = JsonOption,
) -> None:
    """Create a workspace for MODEL: records where it comes from and its weights' fingerprint."""
    from ..errors import WorkspaceError
    from ..workspace.store import Workspace, find_root

    placement = {"device": device, "device_map": parse_device_map(device_map)}
    root = find_root(workspace)
    if Workspace.exists(root):  # refused before the model loads (seconds to minutes)
        Workspace.open(root)  # a newer schema is reported as such
        raise WorkspaceError(f"{root} is already a workspace",
                             hint=f"use it as it is (wdsp status -w {root}), or pick another folder with -w/--workspace")

    from ..config import default_config_for
    from ..model.loading import load_model
    from ..workspace.checkout import describe_model

    loaded, _ = load_model(model, dtype=dtype, **placement)
    info = describe_model(model, loaded, placement)
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
