"""``wdsp revert`` / ``wdsp forget`` on the tiny model: undoing a middle iteration (or some of its
facts) equals, bit for bit, a workspace that edited the same later batches without it; a kill during
the replay and a rerun give the same result; a dry run changes nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from workspace_helpers import blank_workspace, tree_digest, wdsp, write_facts

SETTINGS = {"memit-sp": ["--sp"], "alphaedit": ["--method", "alphaedit"]}


@pytest.fixture(scope="module")
def blank(tmp_path_factory):
    """A workspace with statistics and no edits, and six facts (three batches of two)."""
    root = tmp_path_factory.mktemp("revert")
    ws = blank_workspace(root, "blank")
    return ws, write_facts(root / "facts.jsonl", 6)


def copy(blank, path: Path) -> Path:
    shutil.copytree(blank[0], path)
    return path


def diffs(ws: Path) -> list[dict]:
    head = int((ws / "HEAD").read_text())
    return [load_file(str(ws / "iterations" / f"{t:06d}" / "diff.safetensors")) for t in range(1, head + 1)]


def assert_same_diffs(a: Path, b: Path) -> None:
    left, right = diffs(a), diffs(b)
    assert len(left) == len(right)
    for t, (x, y) in enumerate(zip(left, right), start=1):
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x), f"iteration {t} differs"


def edit(ws, facts, settings, *extra):
    wdsp("edit", facts, "-w", ws, "--steps", 3, "-b", 2, *settings, *extra)


@pytest.mark.parametrize("name", SETTINGS)
def test_revert_of_a_middle_iteration_equals_never_having_edited_it(blank, tmp_path, name):
    settings = SETTINGS[name]
    ws = copy(blank, tmp_path / "ws")
    edit(ws, blank[1], settings)  # iterations 1, 2, 3
    result = json.loads(wdsp("revert", 2, "-w", ws, "--json").stdout)
    assert result["report"]["head"] == 2 and [e["from"] for e in result["report"]["iterations"]] == [3]
    archive = Path(result["report"]["archives"][0])
    assert sorted(p.name for p in archive.iterdir()) == ["000002", "000003"]  # nothing lost
    assert not (ws / "revert.json").exists()
    never = copy(blank, tmp_path / "never")
    edit(never, blank[1], settings, "--limit", 2)
    edit(never, blank[1], settings, "--offset", 4)
    assert_same_diffs(ws, never)


def test_only_some_facts_and_forget_equal_editing_without_them(blank, tmp_path):
    ws = copy(blank, tmp_path / "ws")
    edit(ws, blank[1], ["--sp"])
    gone = json.loads((ws / "iterations" / "000002" / "requests.jsonl").read_text().splitlines()[0])["request_id"]
    forgot = Path(shutil.copytree(ws, tmp_path / "forgot"))
    wdsp("revert", 2, "--only", gone, "-w", ws)
    wdsp("forget", gone, "-w", forgot)
    never = copy(blank, tmp_path / "never")
    edit(never, blank[1], ["--sp"], "--limit", 2)
    wdsp("edit", blank[1], "-w", never, "--steps", 3, "-b", 1, "--sp", "--offset", 3, "--limit", 1)
    edit(never, blank[1], ["--sp"], "--offset", 4)
    assert_same_diffs(ws, never)
    assert_same_diffs(forgot, never)


def test_dry_run_changes_nothing_and_errors_name_the_fix(blank, tmp_path):
    ws = copy(blank, tmp_path / "ws")
    edit(ws, blank[1], [])
    before = tree_digest(ws)
    plan = json.loads(wdsp("revert", 1, "--dry-run", "--json", "-w", ws).stdout)
    assert plan["dry_run"] and [b["from"] for b in plan["replay"]] == [2, 3] and plan["estimated_seconds"] > 0
    assert "Estimated edit time" in wdsp("forget", "line 1", "--dry-run", "-w", ws).stdout
    assert tree_digest(ws) == before
    assert "between 1 and 3" in wdsp("revert", 4, "-w", ws, code=2).stderr
    assert "has no request(s) nope" in wdsp("revert", 2, "--only", "nope", "-w", ws, code=2).stderr
    assert "edited request(s) nope" in wdsp("forget", "nope", "-w", ws, code=2).stderr
    assert tree_digest(ws) == before


def test_a_killed_revert_is_finished_by_the_same_command_and_blocks_other_changes(blank, tmp_path):
    ws = copy(blank, tmp_path / "ws")
    wdsp("edit", blank[1], "-w", ws, "--steps", 25, "-b", 2, "--sp")
    finished = Path(shutil.copytree(ws, tmp_path / "finished"))
    wdsp("revert", 1, "-w", finished)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "wdsp_cli", "revert", "1", "-w", str(ws)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = ws / "iterations" / "000001" / "record.json"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if first.exists() and "replay" in json.loads(first.read_text()).get("job", {}).get("source", ""):
            break  # the first replayed batch is committed, the second not yet
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (ws / "revert.json").exists(), "the revert finished before the kill: nothing was tested"
    assert "wdsp revert 1" in wdsp("edit", blank[1], "-w", ws, code=6).stderr
    assert "wdsp revert 1" in wdsp("rollback", 0, "-w", ws, code=6).stderr
    assert "another revert" in wdsp("revert", 2, "-w", ws, code=6).stderr
    assert "`wdsp revert 1` was interrupted" in wdsp("status", "-w", ws).stderr
    wdsp("revert", 1, "-w", ws)  # finishes the plan
    assert not (ws / "revert.json").exists()
    assert_same_diffs(ws, finished)
