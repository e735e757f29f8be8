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
    requests: Path = typer.Argument(None, help="CounterFact, zsRE or facts JSONL to take the batches from "
                                               "(not needed with --tables-only)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the runs' workspaces, bench.json, bench.md, plots/."),
    batch_size: int = typer.Option(20, "--batch-size", "-b", help="B: requests per iteration."),
    iterations: int = typer.Option(10, "--iterations", "-T", help="T: iterations (batches) per run."),
    methods: str = typer.Option("memit,pmet", "--methods", help="Comma-separated methods."),
    variants: str = typer.Option("none,wd,sp,wd+sp", "--variants",
                                 help="Comma-separated: none, or parts joined by +: wd, sp, anchor, mpes, bf16, "
                                      "budget<R> (e.g. wd+sp, budget0.05)."),
    seeds: str = typer.Option("0", "--seeds", help="Comma-separated seeds (templates, SP dropout)."),
    retention_at: str = typer.Option("", "--retention-at",
                                     help="Iterations at which all requests edited so far are evaluated too "
                                          "(T always is)."),
    retention_every: int = typer.Option(0, "--retention-every",
                                        help="Also evaluate retention every this many iterations."),
    retention_sample: int = typer.Option(0, "--retention-sample",
                                         help="Retention over a fixed random sample of this many of the requests "
                                              "edited so far (0: all of them)."),
    collapse_batches: int = typer.Option(3, "--collapse-batches",
                                         help="Stop a run once this many batches in a row have collapsed (efficacy "
                                              "under 5% or held-out perplexity over 10x the base's); 0: never."),
    jobs: int = typer.Option(1, "--jobs", "-j",
                             help="Runs at once, each in its own process (CPU threads shared out among them, or "
                                  "OMP_NUM_THREADS each; on a GPU they share it)."),
    tables_only: bool = typer.Option(False, "--tables-only",
                                     help="Only write bench.json, bench.md and plots/ from the runs in OUT as far "
                                          "as they have got (safe while the benchmark runs)."),
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
    from ..bench.protocol import BenchSpec, run_bench, summarize
    from ..errors import InputError

    if tables_only:
        results = summarize(out)
    elif requests is None:
        raise InputError("give the requests file to benchmark", hint="e.g. wdsp bench facts.jsonl --out runs/b")
    else:
        spec = BenchSpec(str(requests), batch_size, iterations, _list(methods), _list(variants), _list(seeds, int),
                         _list(retention_at, int), retention_every, retention_sample, collapse_batches, offset,
                         model, corpus, tokens, steps)

        def progress(event: str, data: dict) -> None:
            if event in ("run", "statistics", "parallel"):
                stderr.print(f"{event}: " + ", ".join(f"{k} {v}" for k, v in data.items()))
            elif event == "edit":
                stderr.print(f"  {data['run']}: iteration {data['iteration']}/{iterations}")
            elif event == "collapsed":
                stderr.print(f"  {data['run']}: collapsed since iteration {data['since']}; "
                             f"stopped at {data['iteration']}")

        results = run_bench(out, spec, progress, device=device, jobs=jobs)
    if json:
        emit_json(results)
        return
    stdout.print((Path(out) / "bench.md").read_text())
    stdout.print(f"Figures: {Path(out) / 'bench.json'}; plots: {', '.join(results.get('plots', []))}")
