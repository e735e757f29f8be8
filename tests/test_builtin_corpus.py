"""The built-in corpus: the text of the offline statistics fallback, written once by the default
model and shipped, so `wdsp covariance --corpus builtin` needs no generation and no network."""

from __future__ import annotations

import json

from typer.testing import CliRunner
from workspace_helpers import make_model_dir

from wdsp_cli.cli import app
from wdsp_cli.data.corpus import BUILTIN_FILE, builtin_corpus


def test_the_builtin_corpus_is_shipped_and_stable():
    corpus = builtin_corpus()
    texts = list(corpus.texts())
    assert BUILTIN_FILE.is_file() and len(texts) >= 700 and all(texts)
    assert corpus.identity["kind"] == "builtin" and corpus.identity == builtin_corpus().identity
    assert sum(len(t.split()) for t in texts) > 25_000  # about 50k SmolLM2 tokens


def test_covariance_from_the_builtin_corpus_is_computed_once_then_reused(tmp_path):
    ws = tmp_path / "ws"

    def wdsp(*args):
        result = CliRunner().invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout) if "--json" in args else result

    wdsp("init", "--model", make_model_dir(tmp_path / "model"), "-w", ws)
    first = wdsp("covariance", "-w", ws, "--corpus", "builtin", "--tokens", 1500, "--json")
    again = wdsp("covariance", "-w", ws, "--corpus", "builtin", "--tokens", 1500, "--json")
    assert first["computed"] == [1, 2] and again["reused"] == [1, 2] and first["corpus"]["kind"] == "builtin"
