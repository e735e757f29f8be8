"""Typed errors that carry a message and a hint (the next thing to type).

Public API: ``WdspError`` and its subclasses. The CLI renders ``Error: <message>``
and ``Hint: <hint>`` and exits with the subclass's ``exit_code``.
"""

from __future__ import annotations


class WdspError(Exception):
    """Base class: ``message`` says what is wrong, ``hint`` how to fix it."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\nHint: {self.hint}"


class InputError(WdspError):
    """A user-supplied file or argument is malformed (bad JSONL, missing field...)."""

    exit_code = 2


class ModelError(WdspError):
    """A model cannot be loaded, is unsupported, or is not the one expected."""

    exit_code = 3


class StatisticsError(WdspError):
    """Covariance statistics are missing, mismatched or cannot be computed."""

    exit_code = 4


class EditError(WdspError):
    """An edit cannot be computed or would be unsafe to apply (e.g. non-finite)."""

    exit_code = 5


class WorkspaceError(WdspError):
    """The workspace is missing, of another model, of a newer schema, or the iteration asked for is not in it."""

    exit_code = 6


class WorkspaceBusy(WdspError):
    """Another command is changing the workspace right now (its lock is held)."""

    exit_code = 7


class GateRefused(WdspError):
    """``wdsp edit --gate``: a batch did not reach the gate's thresholds; it was set aside, not committed."""

    exit_code = 8


class ConflictError(WdspError):
    """Requests meet earlier facts (docs/conflicts.md): ``wdsp conflicts`` found some, or
    ``wdsp edit --on-conflict refuse`` refused to edit them."""

    exit_code = 9


#: Exit codes of the ``wdsp`` command (docs/cli.md): 0 success, 1 unexpected error, 130 interrupted.
EXIT_CODES = {cls.__name__: cls.exit_code for cls in
              (WdspError, InputError, ModelError, StatisticsError, EditError, WorkspaceError, WorkspaceBusy,
               GateRefused, ConflictError)}
