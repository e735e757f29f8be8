"""The workspace: one model's editing history on disk, crash-only and append-only.

Layout (``SCHEMA_VERSION`` 1)::

    workspace.json                  schema_version, model (source description, fingerprint, dtype, shape)
    HEAD                            the current iteration t (0 = the base model)
    config.json                     the configuration of the latest edit (the next edit's defaults)
    context-templates.json          {"count/length/seed": [templates]}, sampled once from the base model
    statistics/layer-<l:03d>.safetensors  C_l and what produced it (covariance.layer_statistics_chunks)
    statistics/<name>-<l:03d>.safetensors  a method's per-layer state derived from the statistics
                                    (AlphaEdit: "nullspace", its projection P_l), with what made it
    iterations/<t:06d>/             a committed iteration t:
        diff.safetensors            the update in factor form (deltas.WeightDiff)
        keys.safetensors            the batch's keys per edited layer (AlphaEdit's state)
        requests.jsonl              its requests (requests.request_to_dict, one per line)
        record.json                 written last, the commit marker: config, job, report, sizes
    evaluations/<t:06d>.json        ``wdsp evaluate`` results at iteration t (health included)
    health-sample.json              the held-out texts and prompts of the health figures, and the base's figures
    rejected/<time>-iteration-<t>/  a candidate iteration ``wdsp edit --gate`` refused (same files; never committed)
    revert.json                     the plan of an unfinished ``wdsp revert`` / ``forget`` (removed when done)
    archive/<stamp>/<t:06d>/        iterations set aside by an edit made after a rollback
    .lock                           flock'ed by the command that is changing the workspace

This class owns every path of that layout and every write into it: no other module joins a
workspace path. Every file is written to a temporary name, fsynced and renamed into place
(``atomic``), with the umask's permissions and, for safetensors, canonical bytes
(``tensorfile``); an iteration is built in a hidden temporary folder and renamed to its number
only when complete, then HEAD moves. The lock's holder removes what a killed writer left (hidden
``.partial-*`` folders and ``.<name>.<random>.tmp`` files). The model at iteration t is base +
diffs 1..t (``checkout``); rollback only moves HEAD, and nothing is deleted: later iterations
stay until an edit archives them.

Schema migrations: ``MIGRATIONS[v]`` turns a version-v workspace into version v + 1 in place;
``Workspace.open`` runs the ones an older workspace needs, in order, under the lock, and writes
the new ``schema_version`` atomically after each one; a newer workspace is refused.

Public API:
    SCHEMA_VERSION, MIGRATIONS, Workspace.create(root, model) / Workspace.open(root) /
    Workspace.exists(root), find_root(path), now()
    Workspace: .head / .head_or_none() / .set_head(t) / .iterations() / .numbered_iterations() / .iteration_dir(t)
               .iteration_files(t) / .record(t) / .diff(t) / .requests(t) / .keys(t)
               .commit_iteration(t, diff, requests, record, keys=...) / .archive_after(t) / .archived_sets()
               .lock() / .leftovers()
               .statistics_path(l) / .statistics_layers() / .statistics_metadata(l) / .save_statistics(stats)
               .adopt_statistics(other, layers) / .derived_path(name, l) / .derived_layers(name)
               .derived_metadata(name, l) / .derived(name, l) / .save_derived(name, l, tensor, metadata)
               .templates(key) / .save_templates(key, list) / .templates_path
               .config() / .save_config(cfg) / .config_path
               .evaluation(t) / .save_evaluation(t, doc) / .evaluation_path(t) / .evaluation_iterations()
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import EditConfig
from ..data.requests import EditRequest, request_from_dict, request_to_dict
from ..errors import EditError, WdspError, WorkspaceBusy, WorkspaceError
from ..files.atomic import (
    atomic_write_bytes,
    atomic_write_text,
    fsync_dir,
    is_temporary,
    rename_folder,
)
from ..model.weights import WeightDiff

SCHEMA_VERSION = 1
WORKSPACE_FILE = "workspace.json"
ENV_VAR = "WDSP_WORKSPACE"

#: from_version -> a function that turns a workspace of that schema version into the next one,
#: in place, with the lock held (``Workspace.open`` writes the new version after it returns).
#: Empty: version 1 is the first. A migration writes with this module's atomic writers only.
MIGRATIONS: dict[int, Callable[[Workspace], None]] = {}

#: folder -> the names of the files written there whose temporaries (``.<name>.<random>.tmp``,
#: ``atomic.is_temporary``) the lock's holder removes; other files, hidden or not, are left alone.
_WRITTEN_FILES = {
    ".": re.compile(r"HEAD|workspace\.json|config\.json|context-templates\.json|health-sample\.json"),
    "statistics": re.compile(r"[a-z]+-\d+\.safetensors(\.\d+)?"),  # (.<pid>: older writers)
    "evaluations": re.compile(r"\d+\.json"),
}


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


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
        if root.exists() and not root.is_dir():
            raise WorkspaceError(f"{root} is a file", hint="pick a folder for the workspace")
        root.mkdir(parents=True, exist_ok=True)
        info = {"schema_version": SCHEMA_VERSION, "created_at": now(), "wdsp_version": __version__,
                "model": model}
        workspace = cls(root, info)
        with workspace.lock("wdsp init"):  # two inits of one folder: the second is refused, not interleaved
            if (root / WORKSPACE_FILE).exists():
                raise WorkspaceError(f"{root} is already a workspace",
                                     hint="use it as it is, or pick another folder with -w/--workspace")
            atomic_write_text(root / "HEAD", "0\n")
            atomic_write_text(root / WORKSPACE_FILE, json.dumps(info, indent=2, sort_keys=True))  # last: the marker
        return workspace

    @staticmethod
    def exists(root: str | os.PathLike) -> bool:
        """Whether ``root`` holds a workspace (its workspace.json, written last by ``create``)."""
        return (Path(root) / WORKSPACE_FILE).exists()

    @classmethod
    def open(cls, root: str | os.PathLike) -> Workspace:
        """The workspace at ``root``, migrated first if its schema is older (``MIGRATIONS``);
        WorkspaceError if there is none, it is damaged or it is newer than this wdsp."""
        root = Path(root).absolute()
        workspace = cls(root, cls._read_info(root))
        if workspace.info["schema_version"] < SCHEMA_VERSION:
            workspace._migrate()
        return workspace

    @staticmethod
    def _read_info(root: Path) -> dict:
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
        return info

    def _migrate(self) -> None:
        """Run the migrations from the stored version up to SCHEMA_VERSION, one at a time, under
        the lock; each bumps ``schema_version`` atomically once it has succeeded, so a crash in
        one leaves the workspace at the last completed version and the next open resumes."""
        with self.lock("wdsp (upgrading the workspace format)"):
            self.info = self._read_info(self.root)  # another process may have migrated it meanwhile
            while (version := self.info["schema_version"]) < SCHEMA_VERSION:
                migration = MIGRATIONS.get(version)
                if migration is None:
                    raise WorkspaceError(f"the workspace at {self.root} has schema version {version} and this "
                                         f"wdsp ({__version__}) has no migration from it",
                                         hint="open it with the wdsp version that made it, or report this")
                migration(self)
                info = {**self.info, "schema_version": version + 1,
                        "migrated": [*self.info.get("migrated", []),
                                     {"from": version, "at": now(), "wdsp_version": __version__}]}
                atomic_write_text(self.root / WORKSPACE_FILE, json.dumps(info, indent=2, sort_keys=True))
                self.info = info

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
            self._remove_leftovers()
            yield
        finally:
            os.close(fd)  # releases the lock

    def leftovers(self) -> list[Path]:
        """What killed writers left: hidden ``.partial-*`` iteration folders and hidden
        ``.<name>.<random>.tmp`` files of the atomic writer, in the workspace's folders."""
        found = []
        for parent in (self.root / "iterations", self.root / "rejected"):
            if parent.is_dir():
                found += [p for p in parent.glob(".partial-*") if p.is_dir()]
        for name, written in _WRITTEN_FILES.items():
            folder = self.root / name
            if folder.is_dir():
                found += [p for p in folder.iterdir() if p.is_file() and is_temporary(p.name, written)]
        return sorted(found)

    def _remove_leftovers(self) -> None:
        """Remove ``leftovers()`` (only ever under the lock: nobody else is writing)."""
        for path in self.leftovers():
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)

    # ---- HEAD and iterations ---------------------------------------------------------------

    @property
    def head_path(self) -> Path:
        return self.root / "HEAD"

    @property
    def head(self) -> int:
        path = self.head_path
        text = path.read_text().strip() if path.exists() else "0"
        try:
            return int(text)
        except ValueError:
            raise WorkspaceError(f"HEAD holds {text!r}, not an iteration number",
                                 hint=f"make the last good iteration current: {self._rollback_hint()}") from None

    def head_or_none(self) -> int | None:
        """HEAD, or None when it does not hold a number (a damaged workspace)."""
        try:
            return self.head
        except WorkspaceError:
            return None

    def set_head(self, iteration: int) -> None:
        self.check_iteration(iteration)
        atomic_write_text(self.head_path, f"{iteration}\n")

    def _rollback_hint(self, before: int | None = None) -> str:
        """`wdsp rollback N` to the last committed iteration (before ``before``), as a hint."""
        committed = [t for t in self.iterations() if before is None or t < before]
        return f"`wdsp rollback {committed[-1] if committed else 0}`"

    def iteration_dir(self, iteration: int) -> Path:
        return self.root / "iterations" / f"{iteration:06d}"

    def iteration_files(self, iteration: int) -> dict[str, Path]:
        """The files of iteration ``iteration``: diff, keys (optional), requests, record."""
        folder = self.iteration_dir(iteration)
        return {"diff": folder / "diff.safetensors", "keys": folder / "keys.safetensors",
                "requests": folder / "requests.jsonl", "record": folder / "record.json"}

    def numbered_iterations(self) -> list[int]:
        """Every numbered iteration folder, committed (with a record) or not, ascending."""
        folder = self.root / "iterations"
        if not folder.is_dir():
            return []
        return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and p.is_dir())

    def iterations(self) -> list[int]:
        """Committed iterations (folders with a record), ascending; may extend past HEAD."""
        return [t for t in self.numbered_iterations() if self.iteration_files(t)["record"].is_file()]

    def check_iteration(self, iteration: int) -> None:
        committed = self.iterations()
        if iteration != 0 and iteration not in committed:
            have = f"0-{committed[-1]}" if committed else "only 0 (the base model)"
            if self.head_or_none() == iteration:
                raise WorkspaceError(f"HEAD names iteration {iteration}, which is not in the workspace (it has "
                                     f"{have}): HEAD was moved by hand or the workspace was copied in part",
                                     hint=f"make the last committed iteration current: {self._rollback_hint()}")
            raise WorkspaceError(f"iteration {iteration} is not in the workspace (it has {have})",
                                 hint="`wdsp status` lists the iterations")
        if committed and committed != list(range(1, committed[-1] + 1)):
            missing = sorted(set(range(1, committed[-1] + 1)) - set(committed))
            raise WorkspaceError(f"iterations {committed} are not contiguous (missing {missing})",
                                 hint=f"the workspace is damaged; {self._rollback_hint(missing[0])} keeps the "
                                      "iterations before the gap (`wdsp check` for details)")

    def record(self, iteration: int) -> dict:
        path = self.iteration_files(iteration)["record"]
        if not path.exists():
            self.check_iteration(iteration)  # says so when HEAD names an iteration that is not there
        return _read_json(path, f"record of iteration {iteration}")

    def _damaged(self, iteration: int, what: str, error: Exception) -> WorkspaceError:
        return WorkspaceError(f"the {what} of iteration {iteration} is damaged: {error}",
                              hint=f"make the iteration before it current: {self._rollback_hint(iteration)} "
                                   "(then edit again), or restore the file from a backup; `wdsp check` lists "
                                   "every problem")

    def diff(self, iteration: int) -> WeightDiff:
        """Iteration ``iteration``'s weight diff; WorkspaceError (exit 6) if missing or damaged."""
        path = self.iteration_files(iteration)["diff"]
        try:
            return WeightDiff.load(path)
        except WorkspaceError as exc:
            raise self._damaged(iteration, "weight diff (diff.safetensors)", exc) from exc

    def requests(self, iteration: int) -> list[EditRequest]:
        path = self.iteration_files(iteration)["requests"]
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
            return [request_from_dict(json.loads(line)) for line in lines if line.strip()]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise self._damaged(iteration, "requests (requests.jsonl)", exc) from None

    def keys(self, iteration: int) -> dict:
        """layer -> the keys [B, d_in] iteration ``iteration`` edited (empty if none were kept)."""
        from safetensors.torch import load_file

        path = self.iteration_files(iteration)["keys"]
        if not path.exists():
            return {}
        try:
            return {int(name.split(".")[1]): tensor for name, tensor in load_file(str(path)).items()}
        except Exception as exc:  # SafetensorError, OSError, a foreign tensor name
            raise self._damaged(iteration, "keys (keys.safetensors)", exc) from exc

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
        final = self._write_iteration(self.iteration_dir(iteration), iteration, diff, requests, record, keys)
        self.set_head(iteration)
        return final

    def set_aside(self, iteration: int, diff: WeightDiff, requests: Sequence[EditRequest], record: dict,
                  keys: dict | None = None) -> Path:
        """Write a candidate iteration that was not committed (``wdsp edit --gate`` refused it) to
        rejected/<time>-iteration-<t>/, in an iteration's layout; HEAD does not move."""
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        return self._write_iteration(self.root / "rejected" / f"{stamp}-iteration-{iteration}", iteration, diff,
                                     requests, record, keys)

    def _write_iteration(self, final: Path, iteration: int, diff: WeightDiff, requests: Sequence[EditRequest],
                         record: dict, keys: dict | None) -> Path:
        """Write the files of an iteration into a temporary folder beside ``final``, then rename it."""
        parent = final.parent
        parent.mkdir(parents=True, exist_ok=True)
        tmp = parent / f".partial-{iteration:06d}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        files = {name: tmp / path.name for name, path in self.iteration_files(iteration).items()}
        try:
            atomic_write_bytes(files["diff"], diff.to_bytes())
            if keys:
                from ..files.tensorfile import tensor_file_bytes

                atomic_write_bytes(files["keys"], tensor_file_bytes(
                    {f"layer.{l}": k.contiguous() for l, k in sorted(keys.items())}))
            atomic_write_text(files["requests"],
                              "".join(json.dumps(request_to_dict(r), sort_keys=True) + "\n" for r in requests))
            full = {"iteration": iteration, "created_at": now(), "wdsp_version": __version__,
                    "diff_bytes": files["diff"].stat().st_size, **record}
            atomic_write_text(files["record"], json.dumps(full, indent=2, sort_keys=True))
            if final.exists():  # only possible by hand: a numbered folder without a record
                shutil.rmtree(final)
            rename_folder(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
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
        fsync_dir(target)
        fsync_dir(self.root / "iterations")
        fsync_dir(self.root / "evaluations")
        return later, target

    def archived_sets(self) -> list[str]:
        """The names of the folders under archive/ (one per edit made after a rollback)."""
        archive = self.root / "archive"
        return sorted(p.name for p in archive.iterdir() if p.is_dir()) if archive.is_dir() else []

    # ---- statistics ------------------------------------------------------------------------

    @property
    def statistics_dir(self) -> Path:
        return self.root / "statistics"

    def statistics_path(self, layer: int) -> Path:
        return self.statistics_dir / f"layer-{layer:03d}.safetensors"

    def derived_path(self, name: str, layer: int) -> Path:
        """Where a method keeps its per-layer state ``name`` derived from the statistics."""
        if name == "layer" or not name.isalpha() or not name.islower():
            raise ValueError(f"not a name for derived state: {name!r}")
        return self.statistics_dir / f"{name}-{layer:03d}.safetensors"

    def _layers(self, prefix: str) -> list[int]:
        folder = self.statistics_dir
        if not folder.is_dir():
            return []
        return sorted(int(p.stem.split("-")[1]) for p in folder.glob(f"{prefix}-*.safetensors")
                      if p.stem.split("-")[1].isdigit())

    def statistics_layers(self) -> list[int]:
        """Layers with a statistics file, ascending."""
        return self._layers("layer")

    def derived_names(self) -> list[str]:
        """The names of the derived per-layer states stored (e.g. ["nullspace"])."""
        folder = self.statistics_dir
        names = {p.stem.split("-")[0] for p in folder.glob("*-*.safetensors")} if folder.is_dir() else set()
        return sorted(n for n in names - {"layer"} if n.isalpha())

    def derived_layers(self, name: str) -> list[int]:
        """Layers with a stored derived state ``name``, ascending."""
        return self._layers(name)

    def statistics_metadata(self, layer: int) -> dict | None:
        """The metadata of layer ``layer``'s statistics file (header only), or None if there is
        none or its header is torn (it is then recomputed like a missing one)."""
        return _header_or_none(self.statistics_path(layer))

    def save_statistics(self, stats) -> Path:
        """Store ``stats`` (a ``covariance.LayerStatistics``) as its layer's statistics file."""
        from ..statistics.covariance import layer_statistics_chunks

        chunks = layer_statistics_chunks(stats)
        path = self.statistics_path(stats.layer)
        path.parent.mkdir(exist_ok=True)
        atomic_write_bytes(path, chunks)
        return path

    def adopt_statistics(self, other: Workspace, layers: Sequence[int]) -> None:
        """Give this workspace ``other``'s statistics of ``layers`` where it has none: a hard link
        (no copy) where the file system allows, else an atomic copy."""
        self.statistics_dir.mkdir(exist_ok=True)
        for layer in layers:
            target, source = self.statistics_path(layer), other.statistics_path(layer)
            if target.exists():
                continue
            try:
                os.link(source, target)
            except OSError:  # another file system: copy
                atomic_write_bytes(target, source.read_bytes())
            else:
                fsync_dir(self.statistics_dir)

    def derived_metadata(self, name: str, layer: int) -> dict | None:
        """The metadata of a stored derived state, or None (none, or torn)."""
        return _header_or_none(self.derived_path(name, layer))

    def derived(self, name: str, layer: int):
        """The stored derived state ``name`` of ``layer`` (the file's one tensor: "value", or
        "projection" in AlphaEdit files of earlier versions)."""
        from safetensors.torch import load_file

        (tensor,) = load_file(str(self.derived_path(name, layer))).values()
        return tensor

    def save_derived(self, name: str, layer: int, tensor, metadata: dict[str, str]) -> None:
        from ..files.tensorfile import tensor_file_chunks

        self.statistics_dir.mkdir(exist_ok=True)
        atomic_write_bytes(self.derived_path(name, layer), tensor_file_chunks({"value": tensor.contiguous()}, metadata))

    # ---- templates, config, evaluations ------------------------------------------------------

    @property
    def templates_path(self) -> Path:
        return self.root / "context-templates.json"

    def templates(self, key: str) -> list[str] | None:
        path = self.templates_path
        if not path.exists():
            return None
        return _read_json(path, "context templates").get(key)

    def save_templates(self, key: str, templates: list[str]) -> None:
        path = self.templates_path
        stored = _read_json(path, "context templates") if path.exists() else {}
        atomic_write_text(path, json.dumps({**stored, key: templates}, indent=2, sort_keys=True))

    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    def config(self) -> EditConfig | None:
        """The latest edit's configuration, None before the first edit; WorkspaceError if damaged."""
        path = self.config_path
        if not path.exists():
            return None
        try:
            return EditConfig.from_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError, KeyError, WdspError) as exc:
            raise WorkspaceError(f"config.json is unreadable: {getattr(exc, 'message', exc)}",
                                 hint="delete it (it holds only the next edit's defaults) or restore it from a "
                                      "backup; `wdsp check` lists every problem") from None

    def save_config(self, config: EditConfig) -> None:
        atomic_write_text(self.config_path, config.to_json())

    def evaluation_path(self, iteration: int) -> Path:
        return self.root / "evaluations" / f"{iteration:06d}.json"

    def evaluation_iterations(self) -> list[int]:
        """Iterations with a stored evaluation, ascending."""
        folder = self.root / "evaluations"
        if not folder.is_dir():
            return []
        return sorted(int(p.stem) for p in folder.glob("*.json") if p.stem.isdigit())

    def evaluation(self, iteration: int) -> dict | None:
        path = self.evaluation_path(iteration)
        return _read_json(path, "evaluation") if path.exists() else None

    def save_evaluation(self, iteration: int, document: dict) -> None:
        self.evaluation_path(iteration).parent.mkdir(exist_ok=True)
        atomic_write_text(self.evaluation_path(iteration), json.dumps(document, indent=2, sort_keys=True))

    @property
    def health_sample_path(self) -> Path:
        return self.root / "health-sample.json"

    def health_sample(self) -> dict | None:
        """The held-out texts and prompts health is measured on, with the base model's figures on
        them (``jobs.evaluate``); chosen once per workspace. None before the first evaluation."""
        path = self.health_sample_path
        return _read_json(path, "health sample") if path.exists() else None

    def save_health_sample(self, document: dict) -> None:
        atomic_write_text(self.health_sample_path, json.dumps(document, indent=2, sort_keys=True))

    # ---- a revert in progress ---------------------------------------------------------------

    @property
    def revert_path(self) -> Path:
        return self.root / "revert.json"

    def pending_revert(self) -> dict | None:
        """The plan of a ``wdsp revert`` / ``wdsp forget`` that has not finished (``jobs.revert``)."""
        return _read_json(self.revert_path, "revert plan") if self.revert_path.exists() else None

    def save_pending_revert(self, plan: dict) -> None:
        atomic_write_text(self.revert_path, json.dumps(plan, indent=2, sort_keys=True))

    def clear_pending_revert(self) -> None:
        self.revert_path.unlink(missing_ok=True)

    def refuse_while_reverting(self, command: str) -> None:
        """WorkspaceError if a revert is unfinished: another change now would break its replay."""
        plan = self.pending_revert()
        if plan is not None:
            raise WorkspaceError(f"a {plan['command']} was interrupted at iteration {self.head} of its replay, so "
                                 f"`{command}` would change the workspace under it",
                                 hint=f"finish it first: {plan['command']} (the same command resumes)")


def _header_or_none(path: Path) -> dict | None:
    from ..files.tensorfile import read_metadata

    if not path.is_file():
        return None
    try:
        return read_metadata(path)
    except Exception:  # noqa: BLE001 - a torn file: treated as absent by the callers, which recompute it
        return None
