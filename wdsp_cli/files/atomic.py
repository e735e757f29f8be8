"""Crash-safe writes: the one writer of workspace files (and of exported or cached model folders).

Responsibility: a reader sees the old file or the new one, never a half-written one. A file is
written to a hidden temporary name in its own folder (``.<name>.<random>.tmp``), fsynced,
given the permissions the umask asks for (``0o666 & ~umask``, as ``open`` would; ``mkstemp``
alone makes 0600 files a colleague cannot read), renamed over the target (``os.replace``), and
then the folder is fsynced so the rename itself survives a power cut. A whole folder is built
under a hidden name, fsynced file by file, and renamed into place (``rename_folder``).

Public API:
    atomic_write_bytes(path, data)     data: bytes, or an iterable of bytes-like chunks
    atomic_write_text(path, text)      UTF-8
    rename_folder(tmp, final)          rename a complete folder into place, fsync its parent
    fsync_tree(folder) / fsync_dir(folder)
    file_mode() -> int / folder_mode() -> int   0o666 / 0o777 masked by the umask
    is_temporary(name, of=None) -> bool  a leftover of a killed writer (``.<name>.<random>.tmp``)
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

_TEMPORARY = re.compile(r"^\.(?P<target>.+)\.[^.]+\.tmp$")
_umask_lock = threading.Lock()


def _umask() -> int:
    """The process's umask without changing it: /proc (Linux >= 4.7), else set-and-restore
    under a lock (``os.umask`` can only be read by setting it)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def file_mode() -> int:
    """The permissions a new file gets: 0o666 masked by the umask (0644 under umask 022)."""
    return 0o666 & ~_umask()


def folder_mode() -> int:
    """The permissions a new folder gets: 0o777 masked by the umask (``mkdtemp`` gives 0700)."""
    return 0o777 & ~_umask()


def is_temporary(name: str, of: re.Pattern | None = None) -> bool:
    """Whether ``name`` is a temporary file of ``atomic_write_bytes`` (``.<target>.<random>.tmp``),
    and, with ``of``, one whose target's name matches ``of`` (fully)."""
    match = _TEMPORARY.match(name)
    return bool(match) and (of is None or bool(of.fullmatch(match["target"])))


def fsync_dir(folder: str | os.PathLike) -> None:
    """fsync a folder so renames in it are durable; a no-op where the file system refuses."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def fsync_tree(folder: str | os.PathLike) -> None:
    """fsync every file under ``folder``, then every folder (deepest first)."""
    folder = Path(folder)
    paths = sorted(folder.rglob("*"))
    for path in paths:
        if path.is_file() and not path.is_symlink():
            with contextlib.suppress(OSError), open(path, "rb") as handle:
                os.fsync(handle.fileno())
    for path in reversed(paths):
        if path.is_dir() and not path.is_symlink():
            fsync_dir(path)
    fsync_dir(folder)


def atomic_write_bytes(path: str | os.PathLike, data: bytes | Iterable[bytes]) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, chmod, rename, fsync folder).
    ``data``: bytes, or chunks (e.g. a safetensors header and a memoryview of its tensors)."""
    path = Path(path)
    chunks = (data,) if isinstance(data, (bytes, bytearray, memoryview)) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
            handle.flush()
            os.fchmod(handle.fileno(), file_mode())
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def rename_folder(tmp: str | os.PathLike, final: str | os.PathLike) -> None:
    """Rename the complete folder ``tmp`` to ``final`` (same parent, ``final`` must not exist or
    be an empty folder), then fsync the parent. Callers fsync the contents first (``fsync_tree``)."""
    os.rename(tmp, final)
    fsync_dir(Path(final).parent)
