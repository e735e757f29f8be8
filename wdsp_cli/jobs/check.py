"""Checking a workspace for damage: every file it depends on, each problem with its repair.

Public API:
    quick_problems(workspace) -> list[dict]      cheap checks (names and sizes only), for ``wdsp status``
    check_workspace(workspace) -> dict           reads every file: ``wdsp check``

A problem is {"file": path relative to the workspace, "problem": what is wrong, "repair": the
command or action that fixes it}. The quick checks look at HEAD, the iteration folders and the
size of each file (missing, empty, a diff whose size differs from the one its record wrote);
the full check also parses every JSON file, reads every tensor of every safetensors file, and
compares the statistics with the base model. No model is loaded and nothing is written.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import WdspError
from ..workspace.store import WORKSPACE_FILE, Workspace


def _problem(workspace: Workspace, path: Path, problem: str, repair: str) -> dict:
    try:
        name = str(path.relative_to(workspace.root))
    except ValueError:
        name = str(path)
    return {"file": name, "problem": problem, "repair": repair}


def _rollback(good: list[int]) -> str:
    return f"wdsp rollback {good[-1] if good else 0}"


def _last_good_before(committed: list[int], bad: int) -> list[int]:
    """The contiguous committed iterations 1..k before ``bad``."""
    good = []
    for t in committed:
        if t >= bad or t != len(good) + 1:
            break
        good.append(t)
    return good


def _iteration_repair(workspace: Workspace, committed: list[int], t: int, head: int | None) -> str:
    good = _last_good_before(committed, t)
    if head is not None and head < t:
        return (f"iteration {t} is after HEAD ({head}); the next `wdsp edit` archives it, or restore the file "
                "from a backup")
    return (f"`{_rollback(good)}` (the last good iteration), then `wdsp edit` the later batches again; or "
            "restore the file from a backup")


def quick_problems(workspace: Workspace) -> list[dict]:
    """Problems found from names and sizes alone (no file is parsed but HEAD): HEAD unreadable
    or past the last committed iteration, gaps, incomplete iteration folders, missing or empty
    files, and diffs whose size differs from the one recorded when they were written."""
    problems = []
    committed = workspace.iterations()
    head = workspace.head_or_none()
    if head is None:
        problems.append(_problem(workspace, workspace.head_path, "HEAD does not hold an iteration number",
                                 f"`{_rollback(committed)}`"))
    elif head < 0 or (head > 0 and head not in committed):
        last = committed[-1] if committed else 0
        problems.append(_problem(workspace, workspace.head_path,
                                 f"HEAD names iteration {head}, but the last committed iteration is {last}",
                                 f"`wdsp rollback {last}` (the last committed iteration)"))
    gaps = sorted(set(range(1, committed[-1] + 1)) - set(committed)) if committed else []
    for t in gaps:
        problems.append(_problem(workspace, workspace.iteration_dir(t), f"iteration {t} is missing: the "
                                 "iterations are not contiguous", _iteration_repair(workspace, committed, t, head)))
    for t in workspace.numbered_iterations():
        if t not in committed:
            problems.append(_problem(workspace, workspace.iteration_dir(t),
                                     f"iteration folder {t} has no record.json (it was never committed, or its "
                                     "record was lost)", _iteration_repair(workspace, committed, t, head)))
    for t in committed:
        files = workspace.iteration_files(t)
        for name in ("diff", "requests", "record"):
            path = files[name]
            if not path.is_file():
                problems.append(_problem(workspace, path, "missing", _iteration_repair(workspace, committed, t, head)))
            elif path.stat().st_size == 0:
                problems.append(_problem(workspace, path, "empty (0 bytes)",
                                         _iteration_repair(workspace, committed, t, head)))
        if files["keys"].is_file() and files["keys"].stat().st_size == 0:
            problems.append(_problem(workspace, files["keys"], "empty (0 bytes)",
                                     _iteration_repair(workspace, committed, t, head)))
        if files["diff"].is_file() and files["diff"].stat().st_size and files["record"].is_file():
            try:
                expected = workspace.record(t).get("diff_bytes")
            except WdspError:
                expected = None  # reported by the full check
            size = files["diff"].stat().st_size
            if isinstance(expected, int) and size != expected:
                problems.append(_problem(workspace, files["diff"],
                                         f"{size} bytes, but {expected} were written (truncated or replaced)",
                                         _iteration_repair(workspace, committed, t, head)))
    for path in (workspace.config_path, workspace.templates_path):
        if path.is_file() and path.stat().st_size == 0:
            problems.append(_problem(workspace, path, "empty (0 bytes)", _json_repair(workspace, path)))
    for layer in workspace.statistics_layers():
        path = workspace.statistics_path(layer)
        if path.stat().st_size == 0:
            problems.append(_problem(workspace, path, "empty (0 bytes)", _statistics_repair(layer)))
    for name, layer in _derived(workspace):
        path = workspace.derived_path(name, layer)
        if path.stat().st_size == 0:
            problems.append(_problem(workspace, path, "empty (0 bytes)", _derived_repair(path)))
    for t in workspace.evaluation_iterations():
        path = workspace.evaluation_path(t)
        if path.stat().st_size == 0:
            problems.append(_problem(workspace, path, "empty (0 bytes)", _evaluation_repair(path, t)))
    return problems


def _statistics_repair(layer: int) -> str:
    return f"`wdsp covariance --layers {layer} --force` (with the --corpus and --tokens used before)"


def _derived(workspace: Workspace) -> list[tuple[str, int]]:
    return [(name, layer) for name in workspace.derived_names() for layer in workspace.derived_layers(name)]


def _derived_repair(path: Path) -> str:
    return f"delete {path.name}: the next edit of the method that uses it computes it again from the statistics"


def _evaluation_repair(path: Path, t: int) -> str:
    return f"delete {path.name} and run `wdsp evaluate --iteration {t}` again"


def _json_repair(workspace: Workspace, path: Path) -> str:
    if path == workspace.config_path:
        return "delete config.json (it holds only the next edit's defaults; pass the options explicitly)"
    return ("delete context-templates.json: the next edit samples the templates again from the base model "
            "with the same seed; or restore it from a backup")


def _json_problem(path: Path, valid, shape: str) -> str | None:
    """What is wrong with the JSON file ``path`` (None if it parses and ``valid(value)``)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"unreadable: {_short(exc)}"
    return None if valid(value) else f"unreadable: {shape}"


def check_workspace(workspace: Workspace) -> dict:
    """Read every file the workspace depends on; returns {"workspace", "schema_version", "head",
    "iterations", "checked" (files read), "problems" (list, empty when sound), "leftovers" (what
    killed writers left, removed by the next mutating command), "ok"}."""
    from ..config import EditConfig
    from ..statistics.covariance import load_layer_statistics

    problems = quick_problems(workspace)
    seen = {p["file"] for p in problems}
    checked: list[str] = []

    def found(path: Path, problem: str, repair: str) -> None:
        entry = _problem(workspace, path, problem, repair)
        if entry["file"] not in seen:
            seen.add(entry["file"])
            problems.append(entry)

    def readable(path: Path) -> bool:
        rel = _problem(workspace, path, "", "")["file"]
        if path.is_file():
            checked.append(rel)
        return path.is_file() and rel not in seen

    committed = workspace.iterations()
    head = workspace.head_or_none()
    checked += [WORKSPACE_FILE] + (["HEAD"] if workspace.head_path.is_file() else [])
    if readable(workspace.config_path):
        try:
            EditConfig.from_json(workspace.config_path.read_text(encoding="utf-8"))
        except (OSError, ValueError, WdspError, TypeError, KeyError) as exc:
            found(workspace.config_path, f"unreadable: {_short(exc)}", _json_repair(workspace, workspace.config_path))
    if readable(workspace.templates_path):
        problem = _json_problem(workspace.templates_path, lambda stored: isinstance(stored, dict) and all(
            isinstance(v, list) and all(isinstance(x, str) for x in v) for v in stored.values()),
            "not an object of lists of strings")
        if problem:
            found(workspace.templates_path, problem, _json_repair(workspace, workspace.templates_path))
    for layer in workspace.statistics_layers():
        path = workspace.statistics_path(layer)
        if not readable(path):
            continue
        try:
            stats = load_layer_statistics(path)
        except WdspError as exc:
            found(path, _short(exc), _statistics_repair(layer))
            continue
        if stats.metadata.get("model") != workspace.model.get("fingerprint"):
            found(path, "computed on another model (its fingerprint differs)", _statistics_repair(layer))
    for name, layer in _derived(workspace):
        path = workspace.derived_path(name, layer)
        if readable(path):
            try:
                workspace.derived(name, layer)
            except Exception as exc:  # noqa: BLE001 - any reader error means a damaged file
                found(path, f"unreadable: {_short(exc)}", _derived_repair(path))
    for t in committed:
        files = workspace.iteration_files(t)
        repair = _iteration_repair(workspace, committed, t, head)
        readers = (("record", workspace.record), ("diff", workspace.diff), ("requests", workspace.requests),
                   ("keys", workspace.keys))
        for name, read in readers:
            if readable(files[name]):
                try:
                    value = read(t)
                    if name == "diff" and not value.is_finite():
                        found(files[name], "holds non-finite numbers", repair)
                except WdspError as exc:
                    found(files[name], _short(exc), repair)
    for t in workspace.evaluation_iterations():
        path = workspace.evaluation_path(t)
        if readable(path):
            problem = _json_problem(path, lambda document: isinstance(document, dict), "not a JSON object")
            if problem:
                found(path, problem, _evaluation_repair(path, t))
    leftovers = [str(p.relative_to(workspace.root)) for p in workspace.leftovers()]
    return {"workspace": str(workspace.root), "schema_version": workspace.info["schema_version"], "head": head,
            "iterations": committed, "checked": sorted(set(checked)), "problems": problems,
            "leftovers": leftovers, "ok": not problems}


def _short(exc: BaseException) -> str:
    text = exc.message if isinstance(exc, WdspError) else str(exc)
    return text.splitlines()[0] if text else type(exc).__name__
