"""The iterative benchmark on a tiny model: grid, resume, tables, plots."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner
from workspace_helpers import make_model_dir, write_corpus, write_facts

from wdsp_cli.bench.protocol import BenchSpec, run_bench
from wdsp_cli.bench.tables import markdown_tables
from wdsp_cli.cli import app
from wdsp_cli.errors import InputError


def test_bench_runs_the_grid_resumes_and_writes_tables_and_plots(tmp_path):
    model = make_model_dir(tmp_path / "model")
    facts = write_facts(tmp_path / "facts.jsonl")
    spec = BenchSpec(str(facts), batch_size=2, iterations=3, methods=("memit",), variants=("none", "wd+sp"),
                     retention_at=(2,), model=str(model), corpus=str(write_corpus(tmp_path / "c.txt")), tokens=2000,
                     steps=3)
    out = tmp_path / "bench"
    results = run_bench(out, spec)
    runs = results["runs"]
    assert sorted(runs) == ["memit-none-seed0", "memit-wd+sp-seed0"]
    rows = runs["memit-wd+sp-seed0"]["iterations"]
    assert [r["iteration"] for r in rows] == [1, 2, 3] and [("all" in r) for r in rows] == [False, True, True]
    assert rows[2]["all"]["requests"] == 6 and rows[0]["latest"]["requests"] == 2
    assert (out / "plots" / "memit.png").exists()
    table = (out / "bench.md").read_text()
    assert "| MEMIT+WD+SP |" in table and "Retention" in table and "| Method | @1 | @2 | @3 | Avg |" in table
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("record.json")}
    again = run_bench(out, spec)  # resumes: nothing is edited or evaluated again
    assert {p: p.stat().st_mtime_ns for p in out.rglob("record.json")} == stamps
    assert again["runs"] == results["runs"]
    assert markdown_tables(again) == table
    grown = run_bench(out, dataclasses.replace(spec, variants=("none", "wd+sp", "sp")))  # a grid can grow
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps and len(grown["runs"]) == 3


def test_bench_refuses_other_settings_in_the_same_folder_and_too_few_records(tmp_path):
    facts = write_facts(tmp_path / "facts.jsonl")
    with pytest.raises(InputError, match="only 6 records"):
        run_bench(tmp_path / "b", BenchSpec(str(facts), batch_size=4, iterations=2))
    (tmp_path / "b" / "spec.json").write_text(json.dumps({"requests": "other"}))
    with pytest.raises(InputError, match="other settings .*requests"):
        run_bench(tmp_path / "b", BenchSpec(str(facts), batch_size=2, iterations=2))
    with pytest.raises(InputError, match="unknown variant"):
        BenchSpec(str(facts), variants=("l1",))


def test_bench_command_line_json(tmp_path):
    model = make_model_dir(tmp_path / "model")
    facts = write_facts(tmp_path / "facts.jsonl")
    result = CliRunner().invoke(app, ["bench", str(facts), "--out", str(tmp_path / "o"), "-b", "3", "-T", "2",
                                      "--methods", "pmet", "--variants", "sp", "--model", str(model), "--corpus",
                                      str(write_corpus(tmp_path / "c.txt")), "--tokens", "2000", "--steps", "2",
                                      "--json"])
    assert result.exit_code == 0, result.stderr
    assert list(json.loads(result.stdout)["runs"]) == ["pmet-sp-seed0"]


def test_score_table_shows_every_iteration_up_to_ten_then_selected_ones():
    from wdsp_cli.bench.tables import _marks

    assert _marks(3) == [1, 2, 3] and _marks(10) == list(range(1, 11))
    assert _marks(100) == [1, 20, 40, 60, 80, 100] and _marks(12) == [1, 2, 4, 6, 8, 10, 12]


def test_retention_sample_is_fixed_random_and_keeps_its_members_as_iterations_grow():
    from wdsp_cli.jobs.evaluate import retention_sample

    edited = [[f"{s}-{i}" for i in range(10)] for s in range(1, 9)]
    assert retention_sample(edited[:3], None) == [r for b in edited[:3] for r in b]
    assert retention_sample(edited[:2], 50) == [r for b in edited[:2] for r in b]  # covers them all
    early, late = retention_sample(edited[:4], 12), retention_sample(edited, 12)
    assert len(early) == len(late) == 12 and len(set(late)) == 12
    assert early == sorted(early, key=lambda r: tuple(map(int, r.split("-"))))  # in edit order
    assert retention_sample(edited, 12) == late  # deterministic
    # a member of the later sample drawn from iterations 1-4 was in the earlier one (ranks never change)
    assert {r for r in late if int(r.split("-")[0]) <= 4} <= set(early)
    assert {r.split("-")[0] for r in late} != {"1"}  # drawn from across the iterations, not the first ones


def test_collapse_rule():
    from wdsp_cli.bench.protocol import collapsed

    assert not collapsed({"latest": {"efficacy": 40.0}, "health": {"perplexity_ratio": 1.3}})
    assert collapsed({"latest": {"efficacy": 4.0}, "health": {"perplexity_ratio": 1.3}})
    assert collapsed({"latest": {"efficacy": 60.0}, "health": {"perplexity_ratio": 12.0}})
    assert collapsed({"latest": {"efficacy": 60.0}, "health": {"perplexity_ratio": float("nan")}})
    assert not collapsed({"latest": {"efficacy": 60.0}})  # no health figures: efficacy alone


def test_a_collapsed_run_stops_with_its_retention_and_the_tables_say_so(tmp_path, monkeypatch):
    import wdsp_cli.bench.protocol as protocol

    model = make_model_dir(tmp_path / "model")
    facts = write_facts(tmp_path / "facts.jsonl")
    spec = BenchSpec(str(facts), batch_size=1, iterations=5, methods=("memit",), variants=("none",),
                     retention_sample=2, collapse_batches=3, model=str(model),
                     corpus=str(write_corpus(tmp_path / "c.txt")), tokens=2000, steps=2)
    monkeypatch.setattr(protocol, "COLLAPSE_EFFICACY", 101.0)  # every batch counts as collapsed
    out = tmp_path / "bench"
    results = run_bench(out, spec)
    run = results["runs"]["memit-none-seed0"]
    assert [r["iteration"] for r in run["iterations"]] == [1, 2, 3] and run["collapsed_at"] == 1
    end = run["iterations"][-1]
    assert end["all"]["sample"] == 2 and end["all"]["requests"] == 2 and end["all"]["edited"] == 3
    assert set(end["health"]) == set(protocol.HEALTH_FIGURES) and end["engine"] == protocol_engine()
    table = (out / "bench.md").read_text()
    assert "3 of 5 iterations, collapsed from iteration 1 (stopped)" in table and "| — |" in table
    assert "a fixed random sample of 2" in table and "Health at selected iterations" in table
    assert (out / "plots" / "grid.png").exists()
    assert run_bench(out, spec)["runs"] == results["runs"]  # resuming does not edit past the collapse
    monkeypatch.setattr(protocol, "COLLAPSE_EFFICACY", 5.0)
    with pytest.raises(InputError, match="retention_sample"):
        run_bench(out, dataclasses.replace(spec, retention_sample=0))


def protocol_engine() -> str:
    from wdsp_cli import ENGINE_VERSION

    return ENGINE_VERSION


def test_runs_in_parallel_processes_match_one_process_and_tables_come_while_running(tmp_path):
    model = make_model_dir(tmp_path / "model")
    facts = write_facts(tmp_path / "facts.jsonl")
    spec = BenchSpec(str(facts), batch_size=3, iterations=2, methods=("memit",), variants=("none", "sp"),
                     model=str(model), corpus=str(write_corpus(tmp_path / "c.txt")), tokens=2000, steps=2)
    serial = run_bench(tmp_path / "one", spec)
    command = [sys.executable, "-m", "wdsp_cli", "bench", str(facts), "--out", str(tmp_path / "two"), "-b", "3",
               "-T", "2", "--methods", "memit", "--variants", "none,sp", "--model", str(model), "--corpus",
               spec.corpus, "--tokens", "2000", "--steps", "2", "--jobs", "2", "--json"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600)  # workers re-import __main__
    assert finished.returncode == 0, finished.stderr
    parallel = json.loads(finished.stdout)
    assert "parallel: jobs 2" in finished.stderr
    for name, run in serial["runs"].items():
        for a, b in zip(run["iterations"], parallel["runs"][name]["iterations"], strict=True):
            assert a["latest"]["score"] == pytest.approx(b["latest"]["score"], abs=1e-6)
    result = CliRunner().invoke(app, ["bench", "--out", str(tmp_path / "two"), "--tables-only", "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["runs"].keys() == serial["runs"].keys()


def test_tables_of_a_benchmark_that_has_not_evaluated_anything_yet(tmp_path):
    from wdsp_cli.bench.protocol import summarize

    out = tmp_path / "b"
    out.mkdir()
    (out / "spec.json").write_text(json.dumps(dataclasses.asdict(BenchSpec("facts.jsonl", methods=("memit",)))))
    assert summarize(out)["runs"] == {} and "no iteration is evaluated yet" in (out / "bench.md").read_text()


def test_a_run_is_not_continued_by_another_engine(tmp_path):
    model = make_model_dir(tmp_path / "model")
    facts = write_facts(tmp_path / "facts.jsonl")
    spec = BenchSpec(str(facts), batch_size=3, iterations=1, methods=("memit",), variants=("none",),
                     model=str(model), corpus=str(write_corpus(tmp_path / "c.txt")), tokens=2000, steps=2)
    run_bench(tmp_path / "b", spec)
    record = tmp_path / "b" / "runs" / "memit-none-seed0" / "iterations" / "000001" / "record.json"
    document = json.loads(record.read_text())
    document["engine"]["version"] = "0"
    record.write_text(json.dumps(document))
    with pytest.raises(InputError, match="by engine 0; .* must not mix"):
        run_bench(tmp_path / "b", spec)


def test_retention_counts_a_fact_edited_again_once_with_its_latest_target():
    from wdsp_cli.data.requests import EditRequest
    from wdsp_cli.jobs.evaluate import in_force

    r = lambda s, t, p="{} is led by": EditRequest(prompt=p, subject=s, target_new=t)  # noqa: E731
    first, second = [r("Acme", "Bob"), r("Zeta", "Ann")], [r("acme ", "Carol"), r("Zeta", "Ann", "{} is in")]
    kept = in_force([first, second])
    assert [[x.target_new for x in b] for b in kept] == [["Ann"], ["Carol", "Ann"]]
    assert in_force([[r("Acme", "Bob"), r("Acme", "Dan")]]) == [[r("Acme", "Dan")]]
