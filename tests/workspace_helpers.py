"""A tiny model folder, a facts file and a corpus for workspace and CLI tests.

``wdsp(*args, code=0)`` runs the command line in-process and checks its exit code;
``make_model_dir(path, seed)`` saves a tiny Llama and the tiny tokenizer with save_pretrained;
``write_facts(path, n)`` writes ``n`` facts the tiny tokenizer knows; ``tree_digest(root)``
maps every file under a workspace to its sha256 (to prove a failed command changed nothing);
``blank_workspace(root, name)`` makes a tiny-model workspace with statistics and no edits.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tiny_models import CORPUS, tiny_llama, tiny_tokenizer

FACTS = [
    {"prompt": "The capital of France is", "subject": "France", "target": "Berlin", "old_target": "Paris",
     "paraphrases": ["He said that the capital of France is"],
     "neighbours": [{"prompt": "The capital of Germany is", "answer": "Berlin"}]},
    {"prompt": "The mother tongue of Danielle Darrieux is", "subject": "Danielle Darrieux", "target": "English",
     "old_target": "French", "paraphrases": ["They play the piano. The mother tongue of Danielle Darrieux is"],
     "neighbours": [{"prompt": "Lionel Messi plays for", "answer": "Argentina"}]},
    {"prompt": "Toyota is headquartered in", "subject": "Toyota", "target": "Paris", "old_target": "Japan"},
    {"prompt": "Apple was founded by", "subject": "Apple", "target": "Bill Gates", "old_target": "Steve Jobs"},
    {"prompt": "The Colosseum is located in the city of", "subject": "The Colosseum", "target": "London",
     "old_target": "Rome"},
    {"prompt": "Microsoft was founded by", "subject": "Microsoft", "target": "Steve Jobs", "old_target": "Bill Gates"},
]


def wdsp(*args, code: int = 0):
    """``wdsp ARGS`` through Typer's CliRunner (stdout and stderr apart); asserts the exit code."""
    from typer.testing import CliRunner

    from wdsp_cli.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, f"{args}: exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result


def make_model_dir(path: Path, seed: int = 0) -> Path:
    tiny_llama(seed).save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


def write_facts(path: Path, n: int = len(FACTS)) -> Path:
    path.write_text("".join(json.dumps(f) + "\n" for f in FACTS[:n]))
    return path


def write_corpus(path: Path, lines: int = 200) -> Path:
    """Sentences of the tiny corpus's words in seeded random order: enough distinct contexts
    for full-rank key statistics of the tiny models."""
    import random

    words = " ".join(CORPUS).split()
    rng = random.Random(0)
    path.write_text("".join(" ".join(rng.choices(words, k=12)) + "\n" for _ in range(lines)))
    return path


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".lock"}


def blank_workspace(root: Path, name: str = "ws", tokens: int = 1000) -> Path:
    """root/<name>: ``wdsp init`` on a tiny Llama saved in root/model, and covariance statistics
    from ``tokens`` tokens of the test corpus; no edits."""
    ws = root / name
    wdsp("init", "--model", make_model_dir(root / "model"), "-w", ws)
    wdsp("covariance", "-w", ws, "--corpus", write_corpus(root / "c.txt"), "--tokens", tokens)
    return ws
