"""The workspace: one model's editing history on disk, crash-only and append-only.

Layout (``SCHEMA_VERSION`` 1)::

    workspace.json                  schema_version, model (source description, fingerprint, dtype, shape)
    HEAD                            the current iteration t (0 = the base model)
    config.json                     the configuration of the latest edit (the next edit's defaults)
    context-templates.json          {"count/length/seed": [templates]}, sampled once from the base model
    statistics/layer-<l>.safetensors  C_l and what produced it (covariance.save_layer_statistics)
    statistics/nullspace-<l>.safetensors  AlphaEdit's projection P_l, with its threshold
    iterations/<t:06d>/             a committed iteration t:
        diff.safetensors            the update in factor form (deltas.WeightDiff)
        keys.safetensors            the batch's keys per edited layer (AlphaEdit's state)
        requests.jsonl              its requests (requests.request_to_dict, one per line)
        record.json                 written last, the commit marker: config, job, report, sizes
    evaluations/<t:06d>.json        ``wdsp evaluate`` results at iteration t
    archive/<stamp>/<t:06d>/        iterations set aside by an edit made after a rollback
    .lock                           flock'ed by the command that is changing the workspace

Every file is written to a temporary name, fsynced and renamed into place (``atomic``); an
iteration is built in a hidden temporary folder and renamed to its number only when complete,
then HEAD moves. The model at iteration t is base + diffs 1..t (``checkout``); rollback only
moves HEAD, and nothing is deleted: later iterations stay until an edit archives them.

Public API:
    SCHEMA_VERSION, Workspace.create(root, model) / Workspace.open(root), find_root(path)
    Workspace: .head / .set_head(t) / .iterations() / .record(t) / .diff(t) / .requests(t) / .keys(t)
               .commit_iteration(t, diff, requests, record) / .archive_after(t)
               .lock() / .statistics_path(l) / .templates(key) / .save_templates(key, list)
               .config() / .save_config(cfg) / .evaluation(t) / .save_evaluation(t, doc)
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import EditConfig
from ..data.requests import EditRequest, request_from_dict, request_to_dict
from ..errors import EditError, WorkspaceBusy, WorkspaceError
from ..model.weights import WeightDiff
from .atomic import atomic_write_bytes, atomic_write_text

SCHEMA_VERSION = 1
WORKSPACE_FILE = "workspace.json"
ENV_VAR = "WDSP_WORKSPACE"


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WorkspaceError(f"{what} {path} is missing", hint="the workspace is damaged; restore it from a backup") from None
    except (OSError, ValueError) as exc:
        raise WorkspaceError(f"{what} {path} is unreadable: {exc}",
                             hint="the workspace is damaged; restore the file from a backup") from None


def find_root(path: str | os.PathLike | None) -> Path:
    """The workspace folder: ``path``, else $WDSP_WORKSPACE, else the current folder."""
    return Path(path or os.environ.get(ENV_VAR) or ".").expanduser().absolute()


class Workspace:
    """An open workspace folder (see the module docstring for the layout)."""

    def __init__(self, root: Path, info: dict) -> None:
        self.root = root
        self.info = info

    # ---- creation and opening ------------------------------------------------------------

    @classmethod
    def create(cls, root: str | os.PathLike, model: dict) -> Workspace:
        """A new workspace for ``model`` = {"source": describe_source(...), "fingerprint", "dtype",
        "model_type", "num_layers", "hidden_size"}; refuses a folder that already holds one."""
        root = Path(root).absolute()
        if (root / WORKSPACE_FILE).exists():
            raise WorkspaceError(f"{root} is already a workspace",
                                 hint="use it as it is, or pick another folder with -w/--workspace")
        if root.exists() and not root.is_dir():
            raise WorkspaceError(f"{root} is a file", hint="pick a folder for the workspace")
        root.mkdir(parents=True, exist_ok=True)
        info = {"schema_version": SCHEMA_VERSION, "created_at": now(), "wdsp_version": __version__,
                "model": model}
        atomic_write_text(root / "HEAD", "0\n")
        atomic_write_text(root / WORKSPACE_FILE, json.dumps(info, indent=2, sort_keys=True))  # last: the marker
        return cls(root, info)

    @classmethod
    def open(cls, root: str | os.PathLike) -> Workspace:
        root = Path(root).absolute()
        if not (root / WORKSPACE_FILE).is_file():
            raise WorkspaceError(f"no workspace at {root}",
                                 hint=f"create one with `wdsp init -w {root}`, or pass -w/--workspace "
                                 f"(or set ${ENV_VAR}) to an existing one")
        info = _read_json(root / WORKSPACE_FILE, "workspace file")
        version = info.get("schema_version") if isinstance(info, dict) else None
        if not isinstance(version, int):
            raise WorkspaceError(f"{root / WORKSPACE_FILE} has no schema_version", hint="the workspace is damaged")
        if version > SCHEMA_VERSION:
            raise WorkspaceError(f"the workspace at {root} has schema version {version}; this wdsp "
                                 f"({__version__}) reads up to {SCHEMA_VERSION}",
                                 hint="upgrade wdsp (pip install -U wdsp-cli) to use this workspace")
        return cls(root, info)

    @property
    def model(self) -> dict:
        return self.info["model"]

    # ---- the lock --------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, command: str = "wdsp") -> Iterator[None]:
        """Exclusive, non-blocking: a second mutating command fails at once (WorkspaceBusy).
        The kernel drops the lock when its process dies, even by SIGKILL."""
        import fcntl

        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
                raise WorkspaceBusy(f"the workspace {self.root} is being changed by {holder}",
                                    hint="wait for that command to finish, then run this one again") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"`{command}` (pid {os.getpid()})".encode(), 0)
            self._remove_partial_iterations()
            yield
        finally:
            os.close(fd)  # releases the lock

    def _remove_partial_iterations(self) -> None:
        """Hidden folders of iterations a crash left unfinished (only ever under the lock)."""
        folder = self.root / "iterations"
        if folder.is_dir():
            for partial in folder.glob(".partial-*"):
                shutil.rmtree(partial, ignore_errors=True)

    # ---- HEAD and iterations ---------------------------------------------------------------

    @property
    def head(self) -> int:
        text = (self.root / "HEAD").read_text().strip() if (self.root / "HEAD").exists() else "0"
        try:
            return int(text)
        except ValueError:
            raise WorkspaceError(f"HEAD holds {text!r}, not an iteration number",
                                 hint="write the iteration to use into HEAD (0 = base model)") from None

    def set_head(self, iteration: int) -> None:
        self.check_iteration(iteration)
        atomic_write_text(self.root / "HEAD", f"{iteration}\n")

    def iteration_dir(self, iteration: int) -> Path:
        return self.root / "iterations" / f"{iteration:06d}"

    def iterations(self) -> list[int]:
        """Committed iterations (folders with a record), ascending; may extend past HEAD."""
        folder = self.root / "iterations"
        if not folder.is_dir():
            return []
        return sorted(int(p.name) for p in folder.iterdir()
                      if p.name.isdigit() and (p / "record.json").is_file())

    def check_iteration(self, iteration: int) -> None:
        committed = self.iterations()
        if iteration != 0 and iteration not in committed:
            have = f"0-{committed[-1]}" if committed else "only 0 (the base model)"
            raise WorkspaceError(f"iteration {iteration} is not in the workspace (it has {have})",
                                 hint="`wdsp status` lists the iterations")
        if committed and committed != list(range(1, committed[-1] + 1)):
            raise WorkspaceError(f"iterations {committed} are not contiguous", hint="the workspace is damaged")

    def record(self, iteration: int) -> dict:
        return _read_json(self.iteration_dir(iteration) / "record.json", f"record of iteration {iteration}")

    def diff(self, iteration: int) -> WeightDiff:
        return WeightDiff.load(self.iteration_dir(iteration) / "diff.safetensors")

    def requests(self, iteration: int) -> list[EditRequest]:
        path = self.iteration_dir(iteration) / "requests.jsonl"
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
            return [request_from_dict(json.loads(line)) for line in lines if line.strip()]
        except (OSError, ValueError) as exc:
            raise WorkspaceError(f"requests of iteration {iteration} are unreadable: {exc}",
                                 hint="the workspace is damaged") from None

    def keys(self, iteration: int) -> dict:
        """layer -> the keys [B, d_in] iteration ``iteration`` edited (empty if none were kept)."""
        from safetensors.torch import load_file

        path = self.iteration_dir(iteration) / "keys.safetensors"
        if not path.exists():
            return {}
        return {int(name.split(".")[1]): tensor for name, tensor in load_file(str(path)).items()}

    def commit_iteration(self, iteration: int, diff: WeightDiff, requests: Sequence[EditRequest],
                         record: dict, keys: dict | None = None) -> Path:
        """Write iteration ``iteration`` completely, then rename it into place, then move HEAD.

        ``keys``: layer -> the batch's keys [B, d_in] (AlphaEdit's state for later iterations).
        Checks first: the diff is finite and ``iteration`` is HEAD + 1 with nothing after HEAD.
        Any failure (a full disk...) leaves the workspace as it was."""
        if not diff.is_finite():
            raise EditError(f"iteration {iteration}'s update is not finite; nothing was written",
                            hint="lower v_lr or mom2_update_weight's inverse, or check the statistics")
        if iteration != self.head + 1 or any(t > self.head for t in self.iterations()):
            raise WorkspaceError(f"iteration {iteration} cannot follow HEAD {self.head}",
                                 hint="archive later iterations first (an internal error)")
        parent = self.root / "iterations"
        parent.mkdir(exist_ok=True)
        tmp = parent / f".partial-{iteration:06d}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            diff.save(tmp / "diff.safetensors")
            if keys:
                from safetensors.torch import save

                atomic_write_bytes(tmp / "keys.safetensors",
                                   save({f"layer.{l}": k.contiguous() for l, k in sorted(keys.items())}))
            atomic_write_text(tmp / "requests.jsonl",
                              "".join(json.dumps(request_to_dict(r), sort_keys=True) + "\n" for r in requests))
            full = {"iteration": iteration, "created_at": now(), "wdsp_version": __version__,
                    "diff_bytes": (tmp / "diff.safetensors").stat().st_size, **record}
            atomic_write_text(tmp / "record.json", json.dumps(full, indent=2, sort_keys=True))
            final = self.iteration_dir(iteration)
            if final.exists():  # only possible by hand: a numbered folder without a record
                shutil.rmtree(final)
            os.rename(tmp, final)
            _fsync_dir(parent)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.set_head(iteration)
        return final

    def archive_after(self, iteration: int) -> tuple[list[int], Path | None]:
        """Move the committed iterations after ``iteration`` (and their evaluations) to
        archive/<stamp>/; returns (moved iterations, archive folder)."""
        later = [t for t in self.iterations() if t > iteration]
        if not later:
            return [], None
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S") + f"-after-{iteration}"
        target = self.root / "archive" / stamp
        target.mkdir(parents=True)
        for t in later:
            os.rename(self.iteration_dir(t), target / f"{t:06d}")
            evaluation = self.evaluation_path(t)
            if evaluation.exists():
                os.rename(evaluation, target / f"evaluation-{t:06d}.json")
        _fsync_dir(target)
        _fsync_dir(self.root / "iterations")
        return later, target

    # ---- statistics, templates, config, evaluations ------------------------------------------

    def statistics_path(self, layer: int) -> Path:
        return self.root / "statistics" / f"layer-{layer:03d}.safetensors"

    def templates(self, key: str) -> list[str] | None:
        path = self.root / "context-templates.json"
        if not path.exists():
            return None
        return _read_json(path, "context templates").get(key)

    def save_templates(self, key: str, templates: list[str]) -> None:
        path = self.root / "context-templates.json"
        stored = _read_json(path, "context templates") if path.exists() else {}
        atomic_write_text(path, json.dumps({**stored, key: templates}, indent=2, sort_keys=True))

    def config(self) -> EditConfig | None:
        path = self.root / "config.json"
        return EditConfig.from_json(path.read_text(encoding="utf-8")) if path.exists() else None

    def save_config(self, config: EditConfig) -> None:
        atomic_write_text(self.root / "config.json", config.to_json())

    def evaluation_path(self, iteration: int) -> Path:
        return self.root / "evaluations" / f"{iteration:06d}.json"

    def evaluation(self, iteration: int) -> dict | None:
        path = self.evaluation_path(iteration)
        return _read_json(path, "evaluation") if path.exists() else None

    def save_evaluation(self, iteration: int, document: dict) -> None:
        self.evaluation_path(iteration).parent.mkdir(exist_ok=True)
        atomic_write_text(self.evaluation_path(iteration), json.dumps(document, indent=2, sort_keys=True))
