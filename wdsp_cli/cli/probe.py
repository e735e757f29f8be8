"""``wdsp probe``: what the model says after a prompt, at one or more iterations side by side."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import JsonOption, WorkspaceOption, emit_json, handles_errors, stdout


@handles_errors
def probe(
    prompt: str = typer.Argument(..., help='The start of a sentence, e.g. "The Eiffel Tower is in".'),
    iteration: list[int] = typer.Option(None, "--iteration", "-i", help="Iteration(s) to ask (default: HEAD)."),
    base: bool = typer.Option(False, "--base", help="Also ask the base model (iteration 0), side by side."),
    top: int = typer.Option(5, "--top", help="Next tokens to show."),
    max_new_tokens: int = typer.Option(20, "--max-new-tokens", help="Length of the greedy continuation."),
    workspace: Path = WorkspaceOption,
    json: bool = JsonOption,
) -> None:
    """Top next tokens with probabilities and a greedy continuation, per iteration."""
    from rich.table import Table

    from .common import open_workspace

    ws = open_workspace(workspace)
    iterations = list(iteration or [ws.head])
    if base and 0 not in iterations:
        iterations.insert(0, 0)
    for t in iterations:  # an iteration not in the workspace is refused before torch is imported
        ws.check_iteration(t)
    from ..jobs.probe import run_probe

    document = run_probe(ws, prompt, iterations, top, max_new_tokens)
    if json:
        emit_json(document)
        return
    table = Table(title=prompt)
    table.add_column("iteration", justify="right")
    table.add_column("next tokens")
    table.add_column("greedy continuation")
    for row in document["results"]:
        label = f"{row['iteration']}" + (" (base)" if row["iteration"] == 0 else "") \
            + (" (HEAD)" if row["iteration"] == document["head"] and row["iteration"] else "")
        tokens = "\n".join(f"{t['token']!r} {100 * t['probability']:.1f}%" for t in row["top"])
        table.add_row(label, tokens, row["continuation"].replace("\n", "\\n "))
    stdout.print(table)
