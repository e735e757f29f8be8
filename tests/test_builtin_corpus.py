"""The built-in corpus: the text of the offline statistics fallback, written once by the default
model and shipped, so `wdsp covariance --corpus builtin` needs no generation and no network."""

from __future__ import annotations

import json

from workspace_helpers import make_model_dir, wdsp

from wdsp_cli.data.corpus import BUILTIN_FILE, builtin_corpus


def test_the_builtin_corpus_is_shipped_and_stable():
    corpus = builtin_corpus()
    texts = list(corpus.texts())
    assert BUILTIN_FILE.is_file() and len(texts) >= 700 and all(texts)
    assert corpus.identity["kind"] == "builtin" and corpus.identity == builtin_corpus().identity
    assert sum(len(t.split()) for t in texts) > 25_000  # about 50k SmolLM2 tokens


def test_covariance_from_the_builtin_corpus_is_computed_once_then_reused(tmp_path):
    ws = tmp_path / "ws"
    wdsp("init", "--model", make_model_dir(tmp_path / "model"), "-w", ws)
    first = json.loads(wdsp("covariance", "-w", ws, "--corpus", "builtin", "--tokens", 1500, "--json").stdout)
    again = json.loads(wdsp("covariance", "-w", ws, "--corpus", "builtin", "--tokens", 1500, "--json").stdout)
    assert first["computed"] == [1, 2] and again["reused"] == [1, 2] and first["corpus"]["kind"] == "builtin"
