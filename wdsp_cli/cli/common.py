"""What every command shares: the workspace and --json options, error rendering, output.

Conventions: one JSON document on stdout with ``--json``, everything else (logs, progress,
tables without --json) on stderr or stdout as a human reads it; progress on stderr, as Rich
bars on a terminal and as plain lines (``progress_line``, about every 10%) when stderr is a file
or a pipe; errors as ``Error: ...`` and ``Hint: ...`` on stderr with the exit code of the
error's class (``errors.EXIT_CODES``).
``WDSP_DEBUG=1`` adds the traceback.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from ..errors import WdspError

WorkspaceOption = typer.Option(None, "--workspace", "-w", envvar="WDSP_WORKSPACE", show_envvar=True,
                               help="Workspace folder (default: the current folder).")
JsonOption = typer.Option(False, "--json", help="Print one JSON document on stdout (logs and progress go to stderr).")

stderr = Console(stderr=True, highlight=False)
stdout = Console(highlight=False)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def emit_json(document: dict) -> None:
    """One strict JSON document on stdout (NaN -> null)."""
    sys.stdout.write(json.dumps(_clean(document), indent=2, sort_keys=True, allow_nan=False) + "\n")
    sys.stdout.flush()


def plain_progress() -> bool:
    """True when stderr is not a terminal (a log file, a pipe, CI): progress is then written as
    plain lines (``progress_line``) instead of Rich bars, which draw nothing there."""
    return not stderr.is_terminal


def progress_line(text: str) -> None:
    """One plain progress line on stderr, flushed at once (so a log shows it as it happens)."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def setup_logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=stderr, show_path=False)], force=True)
    if not verbose:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def fail(error: WdspError) -> typer.Exit:
    stderr.print(f"[bold red]Error:[/] {error.message}", markup=True, highlight=False, soft_wrap=True)
    if error.hint:
        stderr.print(f"[bold]Hint:[/] {error.hint}", markup=True, highlight=False, soft_wrap=True)
    return typer.Exit(error.exit_code)


def handles_errors(command):
    """Render WdspError as Error/Hint with its exit code; other exceptions as exit code 1;
    Ctrl-C as 130. The workspace stays as it was in every case (the jobs guarantee it)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except WdspError as error:
            if os.environ.get("WDSP_DEBUG"):
                stderr.print_exception()
            raise fail(error) from None
        except KeyboardInterrupt:
            stderr.print("Interrupted; the workspace is as it was after the last committed iteration.")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort):
            raise
        except OSError as error:  # a full disk, a permission: the jobs write nothing half-way
            where = f" ({error.filename})" if error.filename else ""
            stderr.print(f"[bold red]Error:[/] {error.strerror or error}{where}", markup=True, highlight=False,
                         soft_wrap=True)
            fix = "check the path (it is not there)" if isinstance(error, FileNotFoundError) else \
                "free disk space or fix permissions"
            stderr.print(f"[bold]Hint:[/] {fix}, then run the command again; "
                         "the workspace keeps its last committed state", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except Exception as error:  # a bug or an environment problem: say so plainly
            if os.environ.get("WDSP_DEBUG"):
                stderr.print_exception()
            stderr.print(f"[bold red]Error:[/] unexpected {type(error).__name__}: {error}", markup=True,
                         highlight=False, soft_wrap=True)
            stderr.print("[bold]Hint:[/] rerun with WDSP_DEBUG=1 for the traceback and report it", markup=True)
            raise typer.Exit(1) from None

    return wrapper


def open_workspace(path: Path | None):
    from ..workspace.store import Workspace, find_root

    return Workspace.open(find_root(path))


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f}{unit[0]}" if unit == "B" else f"{n:.1f}{unit[0]}"
        n /= 1024
    return str(n)


def fmt_pct(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1f}"
