"""The iterative benchmark on a tiny model: grid, resume, tables, plots."""

from __future__ import annotations

import dataclasses
import json

import pytest
from typer.testing import CliRunner
from workspace_helpers import make_model_dir, write_corpus, write_facts

from wdsp_cli.bench.protocol import BenchSpec, markdown_tables, run_bench
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
    from wdsp_cli.bench.protocol import _marks

    assert _marks(3) == [1, 2, 3] and _marks(10) == list(range(1, 11))
    assert _marks(100) == [1, 20, 40, 60, 80, 100] and _marks(12) == [1, 2, 4, 6, 8, 10, 12]
