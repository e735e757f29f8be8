"""The ``wdsp`` command line (Typer + Rich). Thin: parse, call the library, render.

Heavy imports (torch, transformers) happen inside commands so ``wdsp --help`` is fast.
"""

from __future__ import annotations

import typer

from .. import __version__

app = typer.Typer(
    name="wdsp",
    help="Keep a language model's knowledge up to date, batch after batch: MEMIT/PMET edits "
    "with a Wasserstein distance constraint (WD) and update sparsification (SP).",
    no_args_is_help=True,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"wdsp {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """wdsp: batched, iterative knowledge editing."""


def main() -> None:
    app()
