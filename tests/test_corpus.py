"""Corpus opening (text, JSONL, parquet, folders, the hub) and the model-sample fallback."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from wdsp_cli.data.corpus import (
    Corpus,
    model_samples_corpus,
    open_corpus,
    sample_texts_from_model,
)
from wdsp_cli.errors import InputError, StatisticsError


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def write_parquet(path, columns):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path)
    return path


# ------------------------------------------------------------------------------ plain text


def test_text_file_one_document_per_non_blank_line(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(" = Heading = \n\n  first paragraph . \n\t\nsecond\n", encoding="utf-8")
    corpus = open_corpus(path)
    assert list(corpus.texts()) == ["= Heading =", "first paragraph .", "second"]
    assert list(corpus.texts()) == list(corpus.texts())  # re-iterable
    assert corpus.identity == {
        "kind": "text",
        "path": str(path.resolve()),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "size": path.stat().st_size,
        "document": "line",
    }
    json.dumps(corpus.identity)


def test_string_spec_and_relative_path(tmp_path, monkeypatch):
    (tmp_path / "c.txt").write_text("hello\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert list(open_corpus("c.txt").texts()) == ["hello"]
    assert list(open_corpus("./c.txt").texts()) == ["hello"]


def test_wikitext_file(data_dir):
    corpus = open_corpus(data_dir / "text" / "wikitext2_raw_test.txt")
    first = []
    for text in corpus.texts():
        first.append(text)
        if len(first) == 3:
            break
    assert first[0] == "= Robert Boulter ="
    assert first[1].startswith("Robert Boulter is an English film")
    assert corpus.identity["kind"] == "text" and corpus.identity["size"] == 1_307_975


@pytest.mark.parametrize("content", ["", "\n\n   \n"])
def test_empty_text_file_is_an_error(tmp_path, content):
    path = tmp_path / "empty.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match="empty.txt") as info:
        open_corpus(path)
    assert info.value.hint


def test_missing_file_names_it_and_the_fix(tmp_path):
    with pytest.raises(InputError, match="nope.txt") as info:
        open_corpus(tmp_path / "nope.txt")
    assert "--corpus" in info.value.hint
    with pytest.raises(InputError, match="missing/corpus.jsonl"):
        open_corpus("missing/corpus.jsonl")


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "corpus.csv"
    path.write_text("a,b\n", encoding="utf-8")
    with pytest.raises(InputError, match="unsupported") as info:
        open_corpus(path)
    assert ".jsonl" in info.value.hint


# ------------------------------------------------------------------------------ datasets


def test_jsonl_through_datasets(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"text": "one", "id": 1}, {"text": ""}, {"text": None},
                                              {"text": "two"}])
    corpus = open_corpus(path)
    assert list(corpus.texts()) == ["one", "two"]
    assert corpus.identity["kind"] == "json"
    assert corpus.identity["text_field"] == "text"
    assert corpus.identity["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_jsonl_other_field(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"body": "alpha"}, {"body": "beta"}])
    assert list(open_corpus(path, text_field="body").texts()) == ["alpha", "beta"]


def test_missing_column_names_the_available_ones(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"body": "alpha", "title": "x"}])
    with pytest.raises(InputError, match="'text'") as info:
        open_corpus(path)
    assert "'body'" in info.value.message and "'title'" in info.value.message
    assert "--text-field" in info.value.hint


def test_empty_jsonl_is_an_error(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text("", encoding="utf-8")
    with pytest.raises(InputError, match="c.jsonl"):
        open_corpus(path)


def test_invalid_jsonl_is_an_input_error(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text("{not json\n", encoding="utf-8")
    with pytest.raises(InputError, match="c.jsonl"):
        open_corpus(path)


def test_non_string_field_is_an_error(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"text": "fine"}, {"text": "ok"}])
    corpus = open_corpus(path)
    assert list(corpus.texts()) == ["fine", "ok"]
    path2 = write_jsonl(tmp_path / "d.jsonl", [{"text": 3}])
    with pytest.raises(InputError, match="text"):
        list(open_corpus(path2).texts())


def test_parquet_through_datasets(tmp_path):
    path = write_parquet(tmp_path / "c.parquet", {"text": ["a b", "  ", "c d"], "n": [1, 2, 3]})
    corpus = open_corpus(path)
    assert list(corpus.texts()) == ["a b", "c d"]
    assert corpus.identity["kind"] == "parquet"
    with pytest.raises(InputError, match="'n'"):
        open_corpus(path, text_field="body")


def test_folder_of_files(tmp_path):
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.txt").write_text("from b\n", encoding="utf-8")
    write_jsonl(folder / "a.jsonl", [{"text": "from a"}])
    write_parquet(folder / "sub" / "c.parquet", {"text": ["from c"]})
    (folder / "notes.md").write_text("ignored\n", encoding="utf-8")
    (folder / ".hidden.txt").write_text("ignored\n", encoding="utf-8")
    corpus = open_corpus(folder)
    assert list(corpus.texts()) == ["from a", "from b", "from c"]
    assert corpus.identity["kind"] == "folder"
    assert [f["path"] for f in corpus.identity["files"]] == [
        str((folder / n).resolve()) for n in ("a.jsonl", "b.txt", "sub/c.parquet")]
    json.dumps(corpus.identity)


def test_folder_skips_empty_files(tmp_path):
    (tmp_path / "a.txt").write_text("\n\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text("", encoding="utf-8")
    (tmp_path / "c.txt").write_text("kept\n", encoding="utf-8")
    corpus = open_corpus(tmp_path)
    assert list(corpus.texts()) == ["kept"]
    assert [f["path"] for f in corpus.identity["files"]] == [str((tmp_path / "c.txt").resolve())]
    (tmp_path / "c.txt").write_text("", encoding="utf-8")
    with pytest.raises(InputError, match="empty"):
        open_corpus(tmp_path)


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "notes.md").write_text("x", encoding="utf-8")
    with pytest.raises(InputError, match="no corpus files"):
        open_corpus(tmp_path)


# ------------------------------------------------------------------------------ the hub


def test_hub_unreachable_hints_at_a_local_file(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hugging Face Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(StatisticsError, match="wikitext") as info:
        open_corpus("wikitext:wikitext-2-raw-v1")
    assert "local" in info.value.hint and "--corpus" in info.value.hint


def test_hub_dataset_streams_the_text_field(monkeypatch):
    import datasets

    calls = []

    def fake(name, config=None, split=None, streaming=False):
        calls.append((name, config, split, streaming))
        return [{"text": "hub one", "x": 1}, {"text": ""}, {"text": "hub two", "x": 2}]

    monkeypatch.setattr(datasets, "load_dataset", fake)
    corpus = open_corpus("owner/data:cfg", split="validation")
    assert list(corpus.texts()) == ["hub one", "hub two"]
    assert calls[0] == ("owner/data", "cfg", "validation", True)
    assert corpus.identity == {"kind": "hub", "name": "owner/data", "config": "cfg", "split": "validation",
                               "text_field": "text"}
    with pytest.raises(InputError, match="'x'"):
        open_corpus("owner/data", text_field="body")


# ------------------------------------------------------------------------------ model samples


def test_model_samples_are_deterministic_for_a_seed(tiny_model, tokenizer):
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    first = sample_texts_from_model(tiny_model, tokenizer, 3, max_new_tokens=5, seed=7, batch_size=2)
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's RNG is untouched
    again = sample_texts_from_model(tiny_model, tokenizer, 3, max_new_tokens=5, seed=7, batch_size=2)
    other = sample_texts_from_model(tiny_model, tokenizer, 3, max_new_tokens=5, seed=8, batch_size=2)
    assert first == again
    assert first != other
    assert len(first) == 3 and all(isinstance(t, str) and t for t in first)
    assert first[0].startswith("The") and first[1].startswith("In") and first[2].startswith("A")


def test_model_samples_corpus_matches_the_list(tiny_model, tokenizer):
    corpus = model_samples_corpus(tiny_model, tokenizer, 3, seed=1, max_new_tokens=5, batch_size=2)
    assert isinstance(corpus, Corpus)
    texts = list(corpus.texts())
    assert texts == sample_texts_from_model(tiny_model, tokenizer, 3, seed=1, max_new_tokens=5, batch_size=2)
    assert corpus.identity["kind"] == "model-samples"
    assert corpus.identity["n_texts"] == 3 and corpus.identity["seed"] == 1
    json.dumps(corpus.identity)


def test_model_samples_reject_bad_arguments(tiny_model, tokenizer):
    with pytest.raises(InputError):
        sample_texts_from_model(tiny_model, tokenizer, 0)
    with pytest.raises(InputError):
        sample_texts_from_model(tiny_model, tokenizer, 2, prompts=())
