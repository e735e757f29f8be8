"""Byte-reproducible safetensors files: the same tensors and metadata give the same bytes.

Responsibility: ``safetensors.torch.save`` orders the header's ``__metadata__`` as a Rust hash
map iterates, which changes from process to process, so two identical runs wrote files whose
sha256 differed. Here the header is re-serialised canonically: keys sorted at every level,
compact separators, padded with spaces to a multiple of 8 bytes as the format asks. Tensor data
and offsets are untouched (safetensors already lays tensors out in a fixed order), so any
safetensors reader loads the file as before.

Public API:
    tensor_file_chunks(tensors, metadata) -> (header bytes, memoryview of the data)
    tensor_file_bytes(tensors, metadata) -> bytes
    read_metadata(path) -> dict[str, str]       the header's metadata only (safetensors.safe_open)
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping


def tensor_file_chunks(tensors: Mapping, metadata: Mapping[str, str] | None = None) -> tuple[bytes, memoryview]:
    """The file as two chunks, its canonical header and its data; ``tensors``: name -> tensor
    (contiguous, CPU), ``metadata``: str -> str. Nothing is copied twice: the data chunk is a
    view of ``safetensors.torch.save``'s buffer."""
    from safetensors.torch import save

    raw = save({name: tensors[name] for name in sorted(tensors)},
               metadata={k: str(metadata[k]) for k in sorted(metadata)} if metadata else None)
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-(8 + len(text)) % 8)
    return struct.pack("<Q", len(text)) + text, memoryview(raw)[8 + length:]


def tensor_file_bytes(tensors: Mapping, metadata: Mapping[str, str] | None = None) -> bytes:
    header, data = tensor_file_chunks(tensors, metadata)
    return header + bytes(data)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of a safetensors file (reads the header only); raises on a torn file."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})
