"""``wdsp bench``: the paper's batched, iterative protocol over a grid, with tables and plots."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import JsonOption, emit_json, handles_errors, stderr, stdout


def _list(text: str, cast=str) -> tuple:
    from ..errors import InputError

    try:
        return tuple(cast(x) for x in text.replace(" ", "").split(",") if x)
    except ValueError:
        raise InputError(f"{text!r} is not a comma-separated list", hint="e.g. --seeds 0,1") from None


@handles_errors
def bench(
    requests: Path = typer.Argument(..., help="CounterFact, zsRE or facts JSONL to take the batches from."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the runs' workspaces, bench.json, bench.md, plots/."),
    batch_size: int = typer.Option(20, "--batch-size", "-b", help="B: requests per iteration."),
    iterations: int = typer.Option(10, "--iterations", "-T", help="T: iterations (batches) per run."),
    methods: str = typer.Option("memit,pmet", "--methods", help="Comma-separated methods."),
    variants: str = typer.Option("none,wd,sp,wd+sp", "--variants", help="Comma-separated: none, wd, sp, wd+sp."),
    seeds: str = typer.Option("0", "--seeds", help="Comma-separated seeds (templates, SP dropout)."),
    retention_at: str = typer.Option("", "--retention-at",
                                     help="Iterations at which all requests edited so far are evaluated too "
                                          "(T always is)."),
    offset: int = typer.Option(0, "--offset", help="First record used."),
    model: str = typer.Option("smollm2-135m-instruct", "--model", "-m", help="Model to edit."),
    corpus: str = typer.Option("model-samples", "--corpus", help="Corpus of the covariance statistics."),
    tokens: int = typer.Option(50_000, "--tokens", help="Tokens of covariance statistics."),
    steps: int = typer.Option(None, "--steps", help="Override the optimisation steps (quick runs)."),
    device: str = typer.Option(None, "--device", help="Where the model runs, e.g. cuda:0 (default: the CPU, or "
                                                      "where the benchmark in OUT was created)."),
    json: bool = JsonOption,
) -> None:
    """Edit T batches of B requests in sequence for each method x variant x seed, evaluating each
    batch right after its edit; writes bench.json, bench.md (the paper's tables) and plots/.

    Each run is a workspace under OUT/runs/, so an interrupted benchmark resumes when rerun."""
    from ..bench.protocol import BenchSpec, run_bench

    spec = BenchSpec(str(requests), batch_size, iterations, _list(methods), _list(variants), _list(seeds, int),
                     _list(retention_at, int), offset, model, corpus, tokens, steps)

    def progress(event: str, data: dict) -> None:
        if event in ("run", "statistics"):
            stderr.print(f"{event}: " + ", ".join(f"{k} {v}" for k, v in data.items()))
        elif event == "edit":
            stderr.print(f"  {data['run']}: iteration {data['iteration']}/{iterations}")

    results = run_bench(out, spec, progress, device=device)
    if json:
        emit_json(results)
        return
    stdout.print((Path(out) / "bench.md").read_text())
    stdout.print(f"Figures: {Path(out) / 'bench.json'}; plots: {', '.join(results['plots'])}")
