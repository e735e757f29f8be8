"""Where covariance statistics' text comes from: local files, a folder, a hub dataset, or the model.

Responsibility: turn what the user names (``--corpus``) into a ``Corpus``, a re-iterable stream of
non-empty documents plus an ``identity`` that says exactly what produced them, so statistics can be
stored with their provenance and reused (never recomputed silently). Opening a corpus checks it
early (file present and readable, text field present, at least one document) and fails with an
``InputError`` naming the file and the fix; streaming keeps memory flat for large corpora.

Public API
    ``Corpus(identity, factory)``           ``.identity: dict``, ``.texts() -> Iterator[str]``.
    ``open_corpus(spec, *, text_field="text", split="train") -> Corpus``
    ``sample_texts_from_model(model, tokenizer, n_texts, *, max_new_tokens=64, seed=0,
        prompts=DEFAULT_SAMPLE_PROMPTS, top_k=50, batch_size=16) -> list[str]``
    ``model_samples_corpus(model, tokenizer, n_texts, *, seed=0, ...) -> Corpus``
    ``CORPUS_SUFFIXES``                     file name endings ``open_corpus`` reads.

What ``spec`` may be
    ``*.txt`` / ``*.text``      plain text; a document is one non-blank line, stripped (WikiText's
                                paragraphs and headings are one line each).
    ``*.jsonl`` / ``*.json`` / ``*.ndjson`` (optionally ``.gz``), ``*.parquet``
                                read with ``datasets.load_dataset("json" | "parquet",
                                data_files=..., streaming=True)``; a document is the string in
                                column ``text_field`` (blank or null values are skipped).
    a folder                    every file above inside it (recursively, sorted by path, hidden
                                files skipped), one after the other.
    ``name`` or ``name:config`` a Hugging Face hub dataset, ``load_dataset(name, config,
                                split=split, streaming=True)``; needs the network.

Identity (JSON-serialisable, sorted when stored): ``kind`` ("text" | "json" | "parquet" |
"folder" | "hub" | "model-samples"), ``path`` (resolved), ``sha256`` and ``size`` (bytes) of
local files, ``text_field``; for a folder the list of its files; for the hub ``name``, ``config``,
``split``. Hashing reads each local file once when the corpus is opened (about 1 s per GB).

The model-sample fallback (no corpus at all, offline): the model writes its own text, sampling
top-k from short prompts under a fixed seed. Statistics from it describe the model's own
distribution rather than natural text, so prefer a real corpus when one exists.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError, StatisticsError

__all__ = [
    "CORPUS_SUFFIXES",
    "DEFAULT_SAMPLE_PROMPTS",
    "Corpus",
    "model_samples_corpus",
    "open_corpus",
    "sample_texts_from_model",
]

logger = logging.getLogger(__name__)

_TEXT_SUFFIXES = (".txt", ".text")
_JSON_SUFFIXES = (".jsonl", ".json", ".ndjson", ".jsonl.gz", ".json.gz", ".ndjson.gz")
_PARQUET_SUFFIXES = (".parquet",)
CORPUS_SUFFIXES: tuple[str, ...] = _TEXT_SUFFIXES + _JSON_SUFFIXES + _PARQUET_SUFFIXES

DEFAULT_SAMPLE_PROMPTS: tuple[str, ...] = ("The", "In", "A", "It", "This", "He", "She", "When")

_EXAMPLE_CORPUS = "../shared/data/text/wikitext2_raw_test.txt"
_CORPUS_HINT = (
    f"pass a plain text file (one document per line), a .jsonl/.json/.parquet file with a text column, "
    f"or a folder of them, e.g. --corpus {_EXAMPLE_CORPUS}"
)


class _EmptyCorpusError(InputError):
    """A corpus file that exists but holds no document (a folder skips such files)."""


@dataclass(frozen=True)
class Corpus:
    """A re-iterable stream of documents and what produced it.

    ``identity``: JSON-serialisable dict (see the module docstring). ``texts()`` starts a fresh
    stream each call and yields only non-empty strings.
    """

    identity: dict[str, Any]
    factory: Callable[[], Iterator[str]] = field(repr=False)

    def texts(self) -> Iterator[str]:
        for text in self.factory():
            if text and not text.isspace():
                yield text

    def __iter__(self) -> Iterator[str]:
        return self.texts()


# --------------------------------------------------------------------------------------------
# local files


def _suffix_kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(_TEXT_SUFFIXES):
        return "text"
    if name.endswith(_JSON_SUFFIXES):
        return "json"
    if name.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    return None


def _file_digest(path: Path) -> tuple[str, int]:
    """(sha256 hex, size in bytes) of a file; InputError if it cannot be read."""
    digest = hashlib.sha256()
    size = 0
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise InputError(f"cannot read corpus file {path}: {exc.strerror or exc}",
                         "check the path and its permissions") from exc
    return digest.hexdigest(), size


def _text_lines(path: Path) -> Iterator[str]:
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            line = line.strip()
            if line:
                yield line


def _open_text_file(path: Path) -> Corpus:
    sha256, size = _file_digest(path)
    try:
        has_text = next(_text_lines(path), None) is not None
    except OSError as exc:
        raise InputError(f"cannot read corpus file {path}: {exc}", "check the path and its permissions") from exc
    if not has_text:
        raise _EmptyCorpusError(f"corpus file {path} holds no text (every line is blank)", _CORPUS_HINT)
    identity = {"kind": "text", "path": str(path), "sha256": sha256, "size": size, "document": "line"}
    return Corpus(identity, lambda: _text_lines(path))


def _load_local_dataset(builder: str, path: Path):
    import datasets

    try:
        return datasets.load_dataset(builder, data_files=str(path), split="train", streaming=True)
    except Exception as exc:  # datasets raises many types (ArrowInvalid, DatasetGenerationError...)
        raise InputError(f"cannot read corpus file {path} as {builder}: {type(exc).__name__}: {exc}",
                         f"check that it is valid {builder.upper()}; {_CORPUS_HINT}") from exc


def _first_record(stream, where: str, builder: str) -> dict | None:
    try:
        return next(iter(stream), None)
    except StopIteration:  # datasets' json reader raises it (not returns) on an empty file
        return None
    except Exception as exc:
        raise InputError(f"cannot read corpus {where}: {type(exc).__name__}: {exc}",
                         f"check that it is valid {builder.upper()}; {_CORPUS_HINT}") from exc


def _column_texts(stream, text_field: str, where: str) -> Iterator[str]:
    for index, record in enumerate(stream):
        value = record.get(text_field)
        if value is None:
            continue
        if not isinstance(value, str):
            raise InputError(
                f"corpus {where}: record {index + 1} has a {type(value).__name__} in field {text_field!r}, "
                "expected a string",
                "pass --text-field with the name of a column that holds plain text",
            )
        yield value


def _check_text_field(columns: Sequence[str], text_field: str, where: str) -> None:
    if text_field not in columns:
        available = ", ".join(repr(c) for c in columns) or "none"
        raise InputError(f"corpus {where} has no field {text_field!r}; available: {available}",
                         "pass --text-field NAME with the column that holds the text")


def _open_dataset_file(path: Path, builder: str, text_field: str) -> Corpus:
    sha256, size = _file_digest(path)
    if size == 0:
        raise _EmptyCorpusError(f"corpus file {path} is empty", _CORPUS_HINT)
    stream = _load_local_dataset(builder, path)
    first = _first_record(stream, str(path), builder)
    if first is None:
        raise _EmptyCorpusError(f"corpus file {path} holds no records", _CORPUS_HINT)
    columns = list(getattr(stream, "column_names", None) or first.keys())
    _check_text_field(columns, text_field, str(path))
    identity = {"kind": builder, "path": str(path), "sha256": sha256, "size": size, "text_field": text_field}

    def texts() -> Iterator[str]:
        return _column_texts(_load_local_dataset(builder, path), text_field, str(path))

    return Corpus(identity, texts)


def _open_file(path: Path, text_field: str) -> Corpus:
    kind = _suffix_kind(path)
    if kind is None:
        raise InputError(f"corpus file {path} has an unsupported type",
                         f"use one of {', '.join(CORPUS_SUFFIXES)}, or a folder of such files")
    if kind == "text":
        return _open_text_file(path)
    return _open_dataset_file(path, kind, text_field)


def _open_folder(folder: Path, text_field: str) -> Corpus:
    files = sorted(
        p for p in folder.rglob("*")
        if p.is_file() and _suffix_kind(p) is not None
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if not files:
        raise InputError(f"corpus folder {folder} holds no corpus files",
                         f"put files ending in {', '.join(CORPUS_SUFFIXES)} in it, or pass one file")
    parts: list[Corpus] = []
    for path in files:
        try:
            parts.append(_open_file(path, text_field))
        except _EmptyCorpusError:
            logger.warning("skipping empty corpus file %s", path)
    if not parts:
        raise InputError(f"every corpus file in {folder} is empty", _CORPUS_HINT)
    identity = {
        "kind": "folder",
        "path": str(folder),
        "text_field": text_field,
        "size": sum(int(p.identity["size"]) for p in parts),
        "files": [{k: p.identity[k] for k in ("kind", "path", "sha256", "size")} for p in parts],
    }

    def texts() -> Iterator[str]:
        for part in parts:
            yield from part.texts()

    return Corpus(identity, texts)


# --------------------------------------------------------------------------------------------
# the hub


def _looks_like_path(spec: str) -> bool:
    return (
        spec.startswith((".", "/", "~"))
        or spec.count("/") > 1
        or "\\" in spec
        or _suffix_kind(Path(spec)) is not None
    )


def _open_hub(spec: str, text_field: str, split: str) -> Corpus:
    name, _, config = spec.partition(":")
    config = config or None

    def load():
        import datasets

        return datasets.load_dataset(name, config, split=split, streaming=True)

    try:
        stream = load()
        first = _first_record_hub(stream)
    except (InputError, StatisticsError):
        raise
    except Exception as exc:  # offline, unknown name, missing config or split...
        raise StatisticsError(
            f"cannot open hub dataset {spec!r} (split {split!r}) and no local file or folder of that "
            f"name exists: {type(exc).__name__}: {exc}",
            "without network access pass a local corpus instead, e.g. "
            f"--corpus {_EXAMPLE_CORPUS}; or check the dataset name, its config (name:config) and --split",
        ) from exc
    if first is None:
        raise InputError(f"hub dataset {spec!r} split {split!r} holds no records", "choose another --split")
    columns = list(getattr(stream, "column_names", None) or first.keys())
    _check_text_field(columns, text_field, repr(spec))
    identity = {"kind": "hub", "name": name, "config": config, "split": split, "text_field": text_field}
    return Corpus(identity, lambda: _column_texts(load(), text_field, repr(spec)))


def _first_record_hub(stream):
    """The first record, or None; errors propagate (the caller turns them into a StatisticsError)."""
    try:
        return next(iter(stream), None)
    except StopIteration:
        return None


# --------------------------------------------------------------------------------------------


def open_corpus(spec: str | Path, *, text_field: str = "text", split: str = "train") -> Corpus:
    """Open a text corpus for statistics: a local file, a folder of files, or a hub dataset.

    ``spec``: a path (``.txt`` one document per non-blank line; ``.jsonl``/``.json``/``.parquet``
    with the document in ``text_field``), a folder of such files, or ``name[:config]`` of a hub
    dataset (``split`` chooses the split; needs the network). Checks the corpus now: missing or
    unreadable files, missing ``text_field`` (the error lists the available columns) and empty
    corpora raise ``InputError``; an unreachable hub dataset raises ``StatisticsError``, hinting at
    a local file.
    """
    if isinstance(spec, Path) or Path(spec).expanduser().exists() or _looks_like_path(str(spec)):
        path = Path(spec).expanduser()
        if not path.exists():
            raise InputError(f"corpus {str(spec)!r} not found", _CORPUS_HINT)
        path = path.resolve()
        if path.is_dir():
            return _open_folder(path, text_field)
        return _open_file(path, text_field)
    spec = str(spec).strip()
    if not spec:
        raise InputError("no corpus given", _CORPUS_HINT)
    return _open_hub(spec, text_field, split)


# --------------------------------------------------------------------------------------------
# the built-in corpus

BUILTIN = "builtin"
BUILTIN_FILE = Path(__file__).resolve().parent / "texts" / "smollm2-samples.jsonl"


def builtin_corpus() -> Corpus:
    """Text the default model, SmolLM2-135M-Instruct (Apache-2.0), wrote once, shipped with the package
    (``scripts/make_builtin_corpus.py``): the offline fallback's own first texts (the fallback's
    prompts, seed 0, batches of 16), so its statistics are the fallback's for the tokens it holds,
    read in a second instead of written at ~40-120 tokens/s. About 50k tokens, one JSON object
    {"text": ...} per line. Identity: ``{"kind": "builtin", "name": "smollm2-samples", "sha256", "size"}``."""
    sha256, size = _file_digest(BUILTIN_FILE)
    identity = {"kind": BUILTIN, "name": BUILTIN_FILE.stem, "sha256": sha256, "size": size}

    def texts() -> Iterator[str]:
        with BUILTIN_FILE.open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    yield json.loads(line)["text"]

    return Corpus(identity, texts)


# --------------------------------------------------------------------------------------------
# the model-sample fallback


def _model_device(model) -> Any:
    try:
        return next(model.parameters()).device
    except StopIteration:
        import torch

        return torch.device("cpu")


def _left_padded(tokenizer, prompts: Sequence[str], pad_id: int):
    """input_ids and attention_mask [B, L], left-padded, with the tokenizer's default special tokens."""
    import torch

    encoded = [tokenizer(p)["input_ids"] for p in prompts]
    width = max(len(ids) for ids in encoded)
    ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, seq in enumerate(encoded):
        if seq:
            ids[row, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq):] = 1
    return ids, mask


def _iter_model_samples(model, tokenizer, n_texts: int, *, max_new_tokens: int, seed: int,
                        prompts: Sequence[str], top_k: int, batch_size: int) -> Iterator[str]:
    """Yield ``n_texts`` sampled texts, batch by batch; batch b is seeded with ``(seed, b)``."""
    import torch

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        pad_id = 0
    eos_id = tokenizer.eos_token_id
    device = _model_device(model)
    # fork_rng saves and restores the CPU generator, plus the accelerator's one when there is one
    devices = [] if device.type == "cpu" else [device.index or 0]
    device_type = "cuda" if device.type == "cpu" else device.type
    for batch_index, start in enumerate(range(0, n_texts, batch_size)):
        batch_prompts = [prompts[i % len(prompts)] for i in range(start, min(start + batch_size, n_texts))]
        ids, mask = _left_padded(tokenizer, batch_prompts, pad_id)
        with torch.random.fork_rng(devices=devices, device_type=device_type):
            torch.manual_seed(seed * 1_000_003 + batch_index)
            with torch.inference_mode():
                out = model.generate(
                    input_ids=ids.to(device),
                    attention_mask=mask.to(device),
                    do_sample=True,
                    top_k=top_k,
                    top_p=1.0,
                    temperature=1.0,
                    max_new_tokens=max_new_tokens,
                    pad_token_id=pad_id,
                )
        width = ids.shape[1]
        for row, row_mask in zip(out.tolist(), mask.tolist()):
            prompt_ids = row[width - sum(row_mask):width]
            continuation = row[width:]
            if eos_id is not None and eos_id in continuation:
                continuation = continuation[: continuation.index(eos_id)]
            yield tokenizer.decode(prompt_ids + continuation, skip_special_tokens=True).strip()


def _check_sampling_args(n_texts: int, max_new_tokens: int, prompts: Sequence[str], batch_size: int) -> None:
    if n_texts < 1:
        raise InputError(f"n_texts must be at least 1, got {n_texts}", "ask for a positive number of texts")
    if max_new_tokens < 1:
        raise InputError(f"max_new_tokens must be at least 1, got {max_new_tokens}", "pass a positive length")
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}", "pass a positive batch size")
    if not prompts or not all(isinstance(p, str) and p for p in prompts):
        raise InputError("prompts must be a non-empty list of non-empty strings", "e.g. ('The', 'In')")


def sample_texts_from_model(
    model,
    tokenizer,
    n_texts: int,
    *,
    max_new_tokens: int = 64,
    seed: int = 0,
    prompts: Sequence[str] = DEFAULT_SAMPLE_PROMPTS,
    top_k: int = 50,
    batch_size: int = 16,
) -> list[str]:
    """``n_texts`` texts written by the model itself: prompt + up to ``max_new_tokens`` sampled tokens.

    Text i starts from ``prompts[i % len(prompts)]``; sampling is top-k (``top_k``, temperature 1)
    in batches of ``batch_size`` (left-padded), batch b seeded with ``seed * 1_000_003 + b`` inside
    ``torch.random.fork_rng`` so the caller's random state is untouched. Deterministic for a seed,
    a batch size and a device (CPU kernels are deterministic). Special tokens are dropped.
    """
    _check_sampling_args(n_texts, max_new_tokens, prompts, batch_size)
    return list(_iter_model_samples(model, tokenizer, n_texts, max_new_tokens=max_new_tokens, seed=seed,
                                    prompts=tuple(prompts), top_k=top_k, batch_size=batch_size))


def model_samples_corpus(
    model,
    tokenizer,
    n_texts: int,
    *,
    seed: int = 0,
    max_new_tokens: int = 64,
    prompts: Sequence[str] = DEFAULT_SAMPLE_PROMPTS,
    top_k: int = 50,
    batch_size: int = 16,
    model_fingerprint: str | None = None,
) -> Corpus:
    """The model-sample fallback as a ``Corpus``; texts are generated lazily, batch by batch.

    Yields exactly what ``sample_texts_from_model`` returns for the same arguments, so a
    statistics run bounded by ``max_tokens`` generates only the batches it consumes. Identity:
    ``{"kind": "model-samples", "n_texts", "seed", "max_new_tokens", "top_k", "batch_size",
    "prompts", "model"}`` (``model``: ``model_fingerprint`` if given, else the model's name_or_path).
    """
    _check_sampling_args(n_texts, max_new_tokens, prompts, batch_size)
    prompts = tuple(prompts)
    name = model_fingerprint or getattr(getattr(model, "config", None), "_name_or_path", None) or type(model).__name__
    identity = {
        "kind": "model-samples",
        "n_texts": n_texts,
        "seed": seed,
        "max_new_tokens": max_new_tokens,
        "top_k": top_k,
        "batch_size": batch_size,
        "prompts": list(prompts),
        "model": name,
    }
    return Corpus(identity, lambda: _iter_model_samples(
        model, tokenizer, n_texts, max_new_tokens=max_new_tokens, seed=seed, prompts=prompts,
        top_k=top_k, batch_size=batch_size))
