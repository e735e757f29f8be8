"""``wdsp covariance``: the edited layers' key statistics, computed once and kept."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import typer

from .common import (
    JsonOption,
    WorkspaceOption,
    emit_json,
    handles_errors,
    stderr,
    stdout,
)


def parse_layers(text: str | None) -> tuple[int, ...] | None:
    from ..errors import InputError

    if text is None:
        return None
    try:
        layers = tuple(sorted({int(x) for x in text.replace(" ", "").split(",") if x}))
    except ValueError:
        raise InputError(f"--layers {text!r} is not a list of layer numbers", hint="e.g. --layers 4,5,6,7,8") from None
    if not layers or min(layers) < 0:
        raise InputError(f"--layers {text!r} names no valid layer", hint="e.g. --layers 4,5,6,7,8")
    return layers


def method_layers(ws, method: str, layers: tuple[int, ...] | None) -> tuple[int, ...]:
    from ..config import default_config_for
    from ..errors import InputError

    if layers is not None:
        if max(layers) >= ws.model["num_layers"]:
            raise InputError(f"layer {max(layers)} does not exist: the model has {ws.model['num_layers']} layers",
                             hint=f"use layers 0-{ws.model['num_layers'] - 1}")
        return layers
    m = ws.model
    return default_config_for(m["model_type"], m["num_layers"], method, m.get("hidden_size")).layers


def launched_processes() -> tuple[int, str | None, bool]:
    """(rank, device, data_parallel): under `accelerate launch` / `torchrun` (WORLD_SIZE > 1) the
    process group is set up by accelerate (NCCL on GPUs, gloo on CPUs), each process on its device;
    else one process, on the device recorded by ``wdsp init`` (device None)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, None, False
    import torch
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    return state.process_index, str(state.device), True


@handles_errors
def covariance(
    method: str = typer.Option("memit", "--method", help="Whose layers: memit or pmet (ignored with --layers)."),
    layers: str = typer.Option(None, "--layers", help="Comma-separated layer numbers (default: the method's)."),
    corpus: str = typer.Option("model-samples", "--corpus",
                               help="A text/JSONL/parquet file or folder, a hub dataset, builtin (about 50k "
                                    "tokens SmolLM2 wrote, shipped: offline, in seconds) or model-samples (text "
                                    "the base model writes now: offline, minutes)."),
    text_field: str = typer.Option("text", "--text-field", help="The column holding the text (JSONL, parquet, hub)."),
    tokens: int = typer.Option(50_000, "--tokens", help="Tokens to average over."),
    force: bool = typer.Option(False, "--force", help="Replace statistics made from another corpus or budget."),
    workspace: Path = WorkspaceOption,
    json: bool = JsonOption,
) -> None:
    """Compute the edited layers' key statistics E(k k^T) over a corpus; skipped when they exist.

    Statistics belong to the base model and are reused by every edit. A layer whose statistics
    came from another corpus or token budget is refused unless --force. Under `accelerate launch`
    or `torchrun`, each process reads its share of the corpus and process 0 writes the sums."""
    import time

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from ..errors import InputError
    from ..jobs.statistics import compute_statistics
    from .common import open_workspace, plain_progress, progress_line

    if tokens < 1:  # arguments first: nothing is opened or loaded for a bad one
        raise InputError(f"--tokens must be positive, got {tokens}", hint="e.g. --tokens 100000")
    wanted = parse_layers(layers)
    ws = open_workspace(workspace)
    chosen = method_layers(ws, method, wanted)
    rank, device, parallel = launched_processes()
    lines = plain_progress() and rank == 0
    with ws.lock("wdsp covariance") if rank == 0 else contextlib.nullcontext():
        if lines:
            progress_line(f"statistics: layers {list(chosen)}, {tokens} tokens of {corpus} "
                          "(layers that already have them are skipped)")
        clock, shown = time.perf_counter(), [0]

        def progress(done: int, total: int | None) -> None:
            bar.update(task, completed=done)
            percent = 100 * done // (total or tokens)
            if lines and percent // 10 > shown[0] // 10:  # a line every 10% of the tokens
                shown[0] = percent
                progress_line(f"statistics: {done}/{total or tokens} tokens ({percent}%), "
                              f"{time.perf_counter() - clock:.0f} s")

        with Progress(TextColumn("statistics"), BarColumn(), MofNCompleteColumn(), TextColumn("tokens"),
                      TimeElapsedColumn(), console=stderr, transient=True, disable=rank != 0 or lines) as bar:
            task = bar.add_task("tokens", total=tokens)
            report = compute_statistics(ws, chosen, corpus, tokens, force, text_field=text_field,
                                        progress=progress, data_parallel=parallel, device=device,
                                        write=rank == 0)
        if parallel:
            import torch.distributed as dist

            dist.barrier()  # every process has finished before the lock is released
    if rank != 0:
        return
    if json:
        emit_json(report)
    elif report["computed"]:
        stdout.print(f"Statistics for layers {report['computed']} over {report.get('token_count')} tokens of "
                     f"{report['corpus'].get('kind')} in {report['seconds']:.1f} s"
                     + (f"; layers {report['reused']} already matched." if report["reused"] else "."))
    else:
        stdout.print(f"Statistics for layers {report['reused']} already exist for this corpus and budget; nothing to do.")
