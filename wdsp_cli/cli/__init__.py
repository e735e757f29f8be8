"""The ``wdsp`` command line (Typer + Rich). Thin: parse, call the library, render.

Heavy imports (torch, transformers) happen inside commands so ``wdsp --help`` is fast.
"""

from __future__ import annotations

import typer

from .. import __version__

app = typer.Typer(
    name="wdsp",
    help="Keep a language model's knowledge up to date, batch after batch: MEMIT/PMET edits "
    "with a Wasserstein distance constraint (WD) and update sparsification (SP).\n\n"
    "A workspace (-w DIR, $WDSP_WORKSPACE, or the current folder) holds one model's editing history. "
    "Once: `wdsp init`, `wdsp covariance`. Each cycle: `wdsp edit FACTS.jsonl --wd --sp`, "
    "`wdsp evaluate`; `wdsp rollback -1` undoes. Exit codes: docs/cli.md.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"wdsp {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what the library does (stderr)."),
) -> None:
    """Global options; every command also takes -w/--workspace."""
    from .common import setup_logging

    setup_logging(verbose)


def _register() -> None:
    from .bench import bench
    from .check import check
    from .conflicts import conflicts
    from .covariance import covariance
    from .edit import edit
    from .evaluate import evaluate
    from .export import export
    from .init import init
    from .probe import probe
    from .report import report
    from .revert import forget, revert
    from .rollback import rollback
    from .status import status

    # rollback -1: a negative number is an iteration relative to HEAD, not an unknown option
    settings = {rollback: {"ignore_unknown_options": True}}
    for command in (init, covariance, conflicts, edit, evaluate, report, rollback, revert, forget, status, check,
                    probe, export, bench):
        app.command(command.__name__, context_settings=settings.get(command))(command)


_register()


def main() -> None:
    app()
