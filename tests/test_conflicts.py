"""Facts that meet earlier facts: the pure check (against a brute-force oracle too), every input
format, ``wdsp conflicts`` (human, --json, exit codes, no torch) and ``wdsp edit``'s warning on
a workspace edited on the tiny model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from workspace_helpers import FACTS, blank_workspace, tree_digest, wdsp, write_facts

from wdsp_cli.data.conflicts import (
    CHANGES_AGAIN,
    CONTRADICTION,
    DUPLICATE,
    NEW_TARGET,
    SAME_BATCH,
    SAME_SUBJECT,
    fact_key,
    find_conflicts,
    normalise,
)
from wdsp_cli.data.requests import EditRequest, load_requests
from wdsp_cli.errors import ConflictError, InputError

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def req(subject: str, prompt: str, target: str, rid: str, true: str | None = None) -> EditRequest:
    return EditRequest(prompt=prompt, subject=subject, target_new=target, target_true=true, request_id=rid,
                       source=f"f.jsonl:{rid}")


CAPITAL = "The capital of {} is"


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


# --- the pure function ---------------------------------------------------------------------------

def test_changes_again_new_target_and_duplicate_against_committed():
    committed = [(1, [req("France", CAPITAL, "Berlin", "a", "Paris"), req("Toyota", "{} is based in", "Paris", "b")]),
                 (2, [req("Apple", "{} was founded by", "Bill Gates", "c")])]
    new = [req("France", CAPITAL, "London", "x", "Paris"), req("Toyota", "{} is based in", "Paris", "y"),
           req("Rome", CAPITAL, "Italy", "z")]
    report = find_conflicts(new, 2, committed)
    assert [(c.kind, c.severity) for c in report.conflicts] == [(CHANGES_AGAIN, NEW_TARGET), (CHANGES_AGAIN, DUPLICATE)]
    first = report.conflicts[0].to_dict()
    assert (first["earlier"]["request_id"], first["earlier"]["iteration"], first["earlier"]["committed"]) == ("a", 1, True)
    assert (first["request"]["request_id"], first["request"]["iteration"], first["request"]["batch"]) == ("x", 3, 1)
    assert (first["old_target"], first["new_target"], first["request"]["target_true"]) == ("Berlin", "London", "Paris")
    assert first["earlier_iterations"] == [1] and first["subject"] == "france" and first["prompt"] == "the capital of {} is"
    assert report.first_iteration == 3 and report.committed_iterations == (1, 2) and report.committed_requests == 3
    assert report.counts() == {CHANGES_AGAIN: {NEW_TARGET: 1, DUPLICATE: 1},
                               SAME_BATCH: {CONTRADICTION: 0, DUPLICATE: 0, SAME_SUBJECT: 0}}
    assert "2 request(s) change a fact edited before (1 to a new target, 1 to the same target again)" \
        == report.summary()
    json.dumps(report.to_dict(), allow_nan=False)  # JSON types only


def test_the_latest_earlier_edit_is_the_one_reported():
    committed = [(1, [req("France", CAPITAL, "Berlin", "a")]), (2, [req("Apple", "{} makes", "phones", "b")]),
                 (3, [req("France", CAPITAL, "London", "c")])]
    (again,) = find_conflicts([req("France", CAPITAL, "london ", "d")], 5, committed).conflicts
    assert again.severity == DUPLICATE  # the same target as the one in force (iteration 3), not Berlin
    assert again.requests[0].request.request_id == "c" and again.earlier_iterations == (1, 3)
    assert "the same target again" in again.describe()


def test_normalisation_folds_case_whitespace_and_unicode_forms_but_not_punctuation():
    assert normalise("  The  Mother\ttongue of {}\n is ") == "the mother tongue of {} is"
    assert normalise("Léon") == normalise("Le\u0301on")  # composed and decomposed accent
    assert normalise("STRASSE") == normalise("straße")  # casefold, not lower
    committed = [(1, [req("Danielle Darrieux", "The mother tongue of {} is", "English", "a")])]
    same = req("danielle  DARRIEUX", "the mother   tongue of {} is ", "english", "b")
    other = req("Danielle Darrieux", "The mother tongue of {} is:", "French", "c")
    assert fact_key(same) == fact_key(committed[0][1][0]) != fact_key(other)
    report = find_conflicts([same, other], 1, committed)
    assert [(c.kind, c.severity, c.requests[-1].request.request_id) for c in report.conflicts] == \
        [(CHANGES_AGAIN, DUPLICATE, "b")]


def test_same_batch_groups_contradiction_duplicate_and_same_subject():
    new = [req("France", CAPITAL, "Berlin", "1"), req("France", "{} is in", "Asia", "2"),  # same subject
           req("Apple", "{} was founded by", "Bill Gates", "3"), req("apple", "{} was founded by", "Steve Jobs", "4"),
           req("Toyota", "{} is based in", "Paris", "5"), req("Toyota", "{} is based in", "paris", "6"),
           req("Rome", CAPITAL, "Italy", "7")]
    report = find_conflicts(new, 10)
    groups = {c.requests[0].request.request_id: c for c in report.conflicts}
    assert [c.kind for c in report.conflicts] == [SAME_BATCH] * 3
    assert (groups["1"].severity, groups["1"].prompt) == (SAME_SUBJECT, None)
    assert (groups["3"].severity, groups["3"].prompt) == (CONTRADICTION, "{} was founded by")
    assert groups["5"].severity == DUPLICATE
    assert groups["3"].to_dict()["prompts"] == [{"prompt": "{} was founded by", "request_ids": ["3", "4"],
                                                 "targets": ["Bill Gates", "Steve Jobs"]}]
    assert groups["1"].to_dict()["batch"] == 1 and [r["request_id"] for r in groups["1"].to_dict()["requests"]] == \
        ["1", "2"]
    # a contradiction outranks a duplicate and a different prompt in one group
    mixed = find_conflicts([req("X", "{} a", "p", "1"), req("X", "{} a", "p", "2"), req("X", "{} a", "q", "3"),
                            req("X", "{} b", "r", "4")], 4)
    assert [c.severity for c in mixed.conflicts] == [CONTRADICTION]


def test_requests_in_later_batches_change_facts_of_earlier_batches_of_the_same_file():
    new = [req("France", CAPITAL, "Berlin", "1"), req("Apple", "{} makes", "cars", "2"),
           req("France", CAPITAL, "London", "3"), req("Apple", "{} is in", "Paris", "4")]
    report = find_conflicts(new, 2, [(1, [req("Rome", CAPITAL, "Italy", "r")])])
    (again,) = report.conflicts  # batches [1, 2] and [3, 4]: no same-batch group
    earlier, _ = again.requests
    assert (again.kind, again.severity, again.batch, again.iteration) == (CHANGES_AGAIN, NEW_TARGET, 2, 3)
    assert (earlier.committed, earlier.batch, earlier.iteration) == (False, 1, 2)
    assert "batch 1 of this file" in again.describe()
    # all in one batch instead: a contradiction within it, and no changes-again
    one = find_conflicts(new, 4)
    assert [(c.kind, c.severity) for c in one.conflicts] == [(SAME_BATCH, CONTRADICTION), (SAME_BATCH, SAME_SUBJECT)]


def test_first_iteration_first_batch_and_bad_batch_sizes():
    report = find_conflicts([req("A", "{} x", "b", "1"), req("A", "{} x", "c", "2")], 1, first_iteration=7,
                            first_batch=3)
    (c,) = report.conflicts
    assert (c.requests[0].iteration, c.requests[0].batch, c.iteration, c.batch) == (7, 3, 8, 4)
    assert find_conflicts([req("A", "{} x", "b", "1")], 3).to_dict()["count"] == 0
    for bad in (0, -1, True, 1.5):
        with pytest.raises(InputError):
            find_conflicts([req("A", "{} x", "b", "1")], bad)


_subjects = st.sampled_from(["France", "france", "Apple", "APPLE ", "Toyota"])
_prompts = st.sampled_from(["The capital of {} is", "the  capital of {} is", "{} makes", "{} is in"])
_targets = st.sampled_from(["Paris", "paris", "Berlin", "cars"])
_requests = st.lists(st.tuples(_subjects, _prompts, _targets), max_size=12)


@settings(max_examples=60, deadline=None)
@given(history=_requests, new=_requests, batch_size=st.integers(1, 5))
def test_agrees_with_a_brute_force_oracle(history, new, batch_size):
    """Every conflict the pairwise definition implies, and no other."""
    def norm(s):
        return " ".join(s.split()).casefold()

    committed = [(t + 1, [req(*r, f"h{t}")]) for t, r in enumerate(history)]
    requests = [req(*r, f"n{i}") for i, r in enumerate(new)]
    report = find_conflicts(requests, batch_size, committed)
    expected_again = []
    for i, (s, p, t) in enumerate(new):
        before = [(tt, hp) for tt, hp in [(t0 + 1, h) for t0, h in enumerate(history)]
                  + [(len(history) + 1 + j // batch_size, new[j]) for j in range(i - i % batch_size)]
                  if (norm(hp[0]), norm(hp[1])) == (norm(s), norm(p))]
        if before:
            expected_again.append((f"n{i}", DUPLICATE if norm(before[-1][1][2]) == norm(t) else NEW_TARGET))
    got = [(c.requests[1].request.request_id, c.severity) for c in report.conflicts if c.kind == CHANGES_AGAIN]
    assert got == expected_again
    expected_groups = set()
    for start in range(0, len(new), batch_size):
        for s in {norm(r[0]) for r in new[start:start + batch_size]}:
            ids = tuple(f"n{j}" for j in range(start, min(start + batch_size, len(new))) if norm(new[j][0]) == s)
            if len(ids) > 1:
                expected_groups.add(ids)
    assert {tuple(r.request.request_id for r in c.requests) for c in report.conflicts if c.kind == SAME_BATCH} == \
        expected_groups


# --- every input format ----------------------------------------------------------------------------

def _facts_records():
    return [{"prompt": "The capital of France is", "subject": "France", "target": "Berlin", "id": "f1"},
            {"prompt": "the capital of  {} is", "subject": "FRANCE", "target": "London", "id": "f2"}]


def _rome_records():
    def rome(case, target):
        return {"case_id": case, "requested_rewrite": {"prompt": "{}, created by", "subject": "Porsche 911",
                                                       "relation_id": "P176", "target_new": {"str": target},
                                                       "target_true": {"str": "Porsche"}},
                "paraphrase_prompts": [], "neighborhood_prompts": []}
    return [rome(18, "Honda"), rome(19, "Toyota")]


def _easyedit_records():
    return [{"case_id": 4, "prompt": "What is the twin city of Lyon? It is", "subject": "Lyon", "target_new": "Manila",
             "ground_truth": "Beirut", "rephrase_prompt": "Lyon is a twin city of"},
            {"case_id": 10022, "prompt": "What is the twin city of Lyon? It is", "subject": "Lyon",
             "target_new": "Karachi", "ground_truth": "Frankfurt", "rephrase_prompt": "Lyon is a twin city of"}]


def _zsre_records():
    return [{"subject": "Hoover Dam", "src": "What type of dam is Hoover Dam?", "answers": ["arch-gravity dam"],
             "rephrase": "Hoover Dam is what kind of dam?"},
            {"subject": "Hoover Dam", "src": "What type of dam is hoover dam?", "answers": ["embankment dam"],
             "rephrase": "Hoover Dam is what kind of dam?"}]


@pytest.mark.parametrize("records, format, ids", [
    (_facts_records(), "facts", ("f1", "f2")),
    (_rome_records(), "counterfact-rome", ("18", "19")),
    (_easyedit_records(), "counterfact-easyedit", ("4", "10022")),
    (_zsre_records(), "zsre-mend", ("line 1", "line 2")),
])
def test_detected_in_every_format(tmp_path, records, format, ids):
    path = write_jsonl(tmp_path / "requests.jsonl", records)
    requests = load_requests(path)
    assert load_requests(path, format) == requests  # auto-detected as the format named
    (contradiction,) = find_conflicts(requests, 2).conflicts
    assert (contradiction.kind, contradiction.severity) == (SAME_BATCH, CONTRADICTION)
    assert tuple(r.request.request_id for r in contradiction.requests) == ids
    (again,) = find_conflicts(requests, 1).conflicts
    assert (again.kind, again.severity, again.requests[0].request.request_id) == (CHANGES_AGAIN, NEW_TARGET, ids[0])
    result = wdsp("conflicts", path, "-b", 1, "--json", code=ConflictError.exit_code)
    assert json.loads(result.stdout)["counts"][CHANGES_AGAIN][NEW_TARGET] == 1


def test_real_counterfact_files_hold_such_records():
    """Lyon's twin city is asked twice in the EasyEdit CounterFact (cases 4 and 10022), with two targets."""
    parts = [DATA / "counterfact" / f"counterfact_easyedit.part{n}.jsonl" for n in (1, 2)]
    if not all(p.is_file() for p in parts):
        pytest.skip(f"shared data files not found: {parts}")
    requests = [r for p in parts for r in load_requests(p) if r.request_id in ("4", "10022")]
    (c,) = find_conflicts(requests, 2).conflicts
    assert c.severity == CONTRADICTION and c.to_dict()["prompts"][0]["targets"] == ["Manila", "Karachi"]


# --- wdsp conflicts ----------------------------------------------------------------------------------

@pytest.fixture()
def no_workspace(tmp_path, monkeypatch):
    """The current folder holds no workspace and $WDSP_WORKSPACE is unset: the file is checked alone."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WDSP_WORKSPACE", raising=False)
    return tmp_path


def test_conflicts_command_exit_codes_human_and_json(no_workspace):
    clean = write_facts(no_workspace / "clean.jsonl")
    result = wdsp("conflicts", clean)
    assert "No conflicts." in result.stdout and "no workspace (the file alone)" in result.stdout
    document = json.loads(wdsp("conflicts", clean, "--json").stdout)
    assert (document["count"], document["failed"], document["workspace"], document["requests"]) == (0, False, None, 6)

    # the same subject twice in a batch (different prompts), and a contradiction
    facts = write_jsonl(no_workspace / "facts.jsonl", [
        {"prompt": "The capital of France is", "subject": "France", "target": "Berlin", "id": "a"},
        {"prompt": "France is located in", "subject": "France", "target": "Asia", "id": "b"},
        {"prompt": "Apple was founded by", "subject": "Apple", "target": "Bill Gates", "id": "c"},
        {"prompt": "Apple was founded by", "subject": "Apple", "target": "Steve Jobs", "id": "d"}])
    human = wdsp("conflicts", facts, code=9)
    assert "Requests about one subject in one batch" in human.stdout and "contradiction" in human.stdout
    assert "2 group(s) of requests about one subject in one batch (1 contradiction(s)" in human.stdout
    document = json.loads(wdsp("conflicts", facts, "--json", code=9).stdout)
    assert document["count"] == 2 and document["failed"] and document["fail_on"] == "any"
    assert wdsp("conflicts", facts, "--fail-on", "never").exit_code == 0
    wdsp("conflicts", facts, "--fail-on", "contradiction", code=9)
    wdsp("conflicts", facts, "--fail-on", "contradiction", "--limit", 2, code=0)  # a, b: same subject only
    # batches of 1: the second Apple request changes the fact of the first (an earlier batch of the file)
    document = json.loads(wdsp("conflicts", facts, "-b", 1, "--json", code=9).stdout)
    (again,) = document["conflicts"]
    assert (again["kind"], again["earlier"]["batch"], again["request"]["batch"], again["earlier"]["committed"]) == \
        (CHANGES_AGAIN, 3, 4, False)
    document = json.loads(wdsp("conflicts", facts, "--offset", 1, "--limit", 2, "--json").stdout)
    assert document["requests"] == 2 and document["count"] == 0


def test_conflicts_command_refuses_bad_arguments(no_workspace):
    facts = write_facts(no_workspace / "facts.jsonl")
    assert "--fail-on 'sometimes'" in wdsp("conflicts", facts, "--fail-on", "sometimes", code=2).stderr
    wdsp("conflicts", facts, "-b", 0, code=2)
    wdsp("conflicts", no_workspace / "missing.jsonl", code=2)
    assert "no workspace at" in wdsp("conflicts", facts, "-w", no_workspace / "nowhere", code=6).stderr


# --- on a workspace edited on the tiny model ------------------------------------------------------

@pytest.fixture(scope="module")
def edited(tmp_path_factory):
    """Iterations 1 and 2: FACTS[0:2] and FACTS[2:4] (batches of 2)."""
    root = tmp_path_factory.mktemp("conflicts")
    ws = blank_workspace(root)
    facts = write_facts(root / "f.jsonl", 4)
    wdsp("edit", facts, "-w", ws, "--steps", 3, "--batch-size", 2)
    return ws, facts


@pytest.fixture()
def workspace_copy(edited, tmp_path):
    ws, facts = edited
    return shutil.copytree(ws, tmp_path / "ws"), facts


def changed_facts(path: Path) -> Path:
    """France's capital again with a new target (iteration 1 set Berlin), Toyota's the same again
    (iteration 2), and a fact never edited."""
    return write_jsonl(path, [{**FACTS[0], "target": "London"}, FACTS[2], FACTS[4]])


def test_conflicts_command_against_committed_iterations(edited, tmp_path):
    ws, _ = edited
    facts = changed_facts(tmp_path / "again.jsonl")
    document = json.loads(wdsp("conflicts", facts, "-w", ws, "--json", code=9).stdout)
    assert (document["head"], document["first_iteration"], document["checked_against"]) == \
        (2, 3, {"iterations": [1, 2], "requests": 4})
    (france, toyota) = document["conflicts"]
    assert (france["severity"], france["earlier"]["iteration"], france["old_target"], france["new_target"]) == \
        (NEW_TARGET, 1, "Berlin", "London")
    assert (france["request"]["request_id"], france["earlier"]["request_id"]) == ("line 1", "line 1")
    assert (toyota["severity"], toyota["earlier"]["iteration"]) == (DUPLICATE, 2)
    human = wdsp("conflicts", facts, "-w", ws, code=9).stdout
    assert "Facts that change again" in human and "iterations 1-2 of" in human and "Berlin -> London" in human


def test_conflicts_after_a_rollback_count_only_iterations_up_to_head(workspace_copy, tmp_path):
    ws, _ = workspace_copy
    wdsp("rollback", 1, "-w", ws)
    document = json.loads(wdsp("conflicts", changed_facts(tmp_path / "again.jsonl"), "-w", ws, "--json",
                               code=9).stdout)
    assert [c["earlier"]["iteration"] for c in document["conflicts"]] == [1]  # Toyota's iteration 2 is undone


def test_edit_warns_and_reports_conflicts_with_earlier_iterations(workspace_copy, tmp_path):
    ws, _ = workspace_copy
    facts = changed_facts(tmp_path / "again.jsonl")
    result = wdsp("edit", facts, "-w", ws, "--steps", 2, "--batch-size", 3, "--json")
    report = json.loads(result.stdout)
    assert report["head"] == 3 and report["conflicts"]["count"] == 2
    assert [(c["severity"], c["earlier"]["iteration"], c["request"]["iteration"])
            for c in report["conflicts"]["conflicts"]] == [(NEW_TARGET, 1, 3), (DUPLICATE, 2, 3)]
    assert "Warning:" in result.stderr and "2 request(s) change a fact edited before" in result.stderr
    assert "'Berlin' -> 'London'" in result.stderr and f"wdsp conflicts {facts} -b 3 -w {ws}" in result.stderr
    # the request that changes a fact in force got twice the steps (2 x 2 forwards: 3 updates), the others 2
    record = json.loads((ws / "iterations" / "000003" / "record.json").read_text())
    assert record["report"]["changed_facts"] == [{"request": 0, "request_id": "line 1", "replaced": "Berlin",
                                                  "updates": 3}]
    assert max(record["report"]["updates"][1:]) <= 1 and record["config"]["changed_fact_steps"] == 2.0


def test_changed_fact_steps_one_edits_as_before_and_below_one_is_refused(workspace_copy, tmp_path):
    ws, _ = workspace_copy
    again = changed_facts(tmp_path / "again.jsonl")
    assert "must be >= 1" in wdsp("edit", again, "-w", ws, "--set", "changed_fact_steps=0.5", code=2).stderr
    wdsp("edit", again, "-w", ws, "--steps", 2, "-b", 3, "--set", "changed_fact_steps=1")
    record = json.loads((ws / "iterations" / "000003" / "record.json").read_text())
    assert record["report"]["changed_facts"][0]["updates"] == 1


def test_replaced_target_is_the_one_in_force_when_it_differs():
    from wdsp_cli.data.conflicts import replaced_targets

    earlier = [req("France", CAPITAL, "Berlin", "1"), req("france ", CAPITAL, "Rome", "2"),
               req("Spain", CAPITAL, "Paris", "3"), req("France", "{} is in", "Asia", "4"),
               req("Italy", CAPITAL, "Milan", "5"), req("Italy", CAPITAL, "Turin", "6")]
    batch = [req("FRANCE", CAPITAL, "Lyon", "7"), req("Spain", CAPITAL, "paris", "8"), req("Peru", CAPITAL, "X", "9"),
             req("Italy", CAPITAL, "Milan", "10")]
    assert replaced_targets(earlier, batch) == ["Rome", None, None, "Turin"]
    assert replaced_targets([], batch) == [None] * 4


def test_edit_on_conflict_refuse_changes_nothing_and_resume_is_no_conflict(workspace_copy, tmp_path):
    ws, facts = workspace_copy
    before = tree_digest(ws)
    again = changed_facts(tmp_path / "again.jsonl")
    refused = wdsp("edit", again, "-w", ws, "--steps", 2, "--on-conflict", "refuse", code=9)
    assert "Error:" in refused.stderr and f"wdsp conflicts {again}" in refused.stderr
    assert tree_digest(ws) == before
    assert "--on-conflict 'never'" in wdsp("edit", again, "-w", ws, "--on-conflict", "never", code=2).stderr
    # the same job again: its committed batches are skipped, not conflicts with themselves
    result = wdsp("edit", facts, "-w", ws, "--steps", 3, "--batch-size", 2, "--on-conflict", "refuse", "--json")
    rerun = json.loads(result.stdout)
    assert rerun["iterations"] == [] and rerun["conflicts"]["count"] == 0 and "Warning" not in result.stderr
    assert tree_digest(ws) == before
    # the file is clean on its own, but each of its facts is committed already
    document = json.loads(wdsp("conflicts", facts, "-w", ws, "-b", 2, "--json", code=9).stdout)
    assert document["counts"][CHANGES_AGAIN] == {NEW_TARGET: 0, DUPLICATE: 4}


def test_an_unreadable_iteration_is_listed_not_fatal(workspace_copy, tmp_path):
    ws, _ = workspace_copy
    (ws / "iterations" / "000001" / "requests.jsonl").write_text("{not json\n")
    document = json.loads(wdsp("conflicts", changed_facts(tmp_path / "again.jsonl"), "-w", ws, "--json",
                               code=9).stdout)
    assert document["unreadable_iterations"] == [1] and document["count"] == 1
    assert "cannot be read" in wdsp("conflicts", tmp_path / "again.jsonl", "-w", ws, code=9).stderr


def test_conflicts_never_imports_torch(edited, tmp_path):
    import subprocess
    import sys

    ws, facts = edited
    again = changed_facts(tmp_path / "again.jsonl")
    script = f"""
import sys
from typer.testing import CliRunner
from wdsp_cli.cli import app
for args, code in [
    (["conflicts", {str(again)!r}, "-w", {str(ws)!r}], 9),
    (["conflicts", {str(again)!r}, "-w", {str(ws)!r}, "--json"], 9),
    (["conflicts", {str(facts)!r}, "--fail-on", "never", "-w", {str(ws)!r}], 0),
]:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == code, (args, result.exit_code, result.stderr)
print("torch" in sys.modules)
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "False"
