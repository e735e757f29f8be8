"""``wdsp evaluate``: metrics of the latest iteration's requests and of everything edited so far."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import (
    JsonOption,
    WorkspaceOption,
    emit_json,
    fmt_pct,
    handles_errors,
    stdout,
)


@handles_errors
def evaluate(
    iteration: int = typer.Option(None, "--iteration", "-i", help="Evaluate this iteration (default: HEAD)."),
    retention: bool = typer.Option(True, "--retention/--no-retention",
                                   help="Also evaluate all requests edited in iterations 1..t."),
    sample: int = typer.Option(None, "--retention-sample",
                               help="Retention over a fixed random sample of this many of the requests edited so "
                                    "far (the same requests at every iteration while they rank in it), not all."),
    health: bool = typer.Option(True, "--health/--no-health",
                                help="Also measure the model's health: perplexity on held-out text against the "
                                     "base model's, unrelated prompts' next tokens, growth of the edited matrices."),
    workspace: Path = WorkspaceOption,
    json: bool = JsonOption,
) -> None:
    """Efficacy, generalisation, locality and Score at an iteration; stored in the workspace."""
    from rich.table import Table

    from ..jobs.evaluate import run_evaluate
    from .common import open_workspace

    ws = open_workspace(workspace)
    with ws.lock("wdsp evaluate"):
        document = run_evaluate(ws, iteration, retention, health=health, sample=sample)
    if json:
        emit_json(document)
        return
    t = document["iteration"]
    table = Table(title=f"Iteration {t} ({document['latest']['protocol']} metrics, %)")
    for column in ("requests of", "n", "eff.", "gen.", "loc.", "loc. = base", "Score"):
        table.add_column(column, justify="right", no_wrap=True)
    everything = document.get("all", {})
    label = f"iter. 1-{t}" + (f" (sample of {everything['edited']})" if everything.get("sample") else "")
    shown = everything and (t > 1 or everything.get("sample"))
    scopes = [("latest", f"iter. {t}")] + ([("all", label)] if shown else [])
    for name, label in scopes:
        row = document[name]
        table.add_row(label, str(row["requests"]), fmt_pct(row["efficacy"]), fmt_pct(row["generalization"]),
                      fmt_pct(row["locality"]), fmt_pct(row.get("locality_base")), fmt_pct(row["score"]))
    stdout.print(table)
    stdout.print("eff./gen.: the new fact on its prompt / paraphrases; loc.: neighbour prompts keep their answer; "
                 "loc. = base: their greedy next token is the base model's.")
    if "health" in document:
        h = document["health"]
        stdout.print(f"Health: perplexity {h['perplexity']:.2f} ({h['perplexity_ratio']:.3f} x the base model's) on "
                     f"held-out text; {h['locality_prompts']:.1f}% of unrelated prompts keep the base's next token; "
                     f"edited matrices moved up to {100 * h['max_relative_frobenius']:.2f}% (Frobenius) and their "
                     f"largest singular value x{h['max_spectral_ratio']:.3f}.")
