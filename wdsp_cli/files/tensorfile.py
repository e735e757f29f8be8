"""Byte-reproducible safetensors files: the same tensors and metadata give the same bytes.

Responsibility: ``safetensors.torch.save`` orders the header's ``__metadata__`` as a Rust hash
map iterates, which changes from process to process (even from call to call), so two identical
runs wrote files whose sha256 differed. Here the file is laid out canonically, as the
safetensors format defines it: an 8-byte little-endian header length, a JSON header with keys
sorted at every level and compact separators, space-padded to a multiple of 8 bytes, then each
tensor's bytes (little-endian, C order) in the order of their sorted names, back to back. Any
safetensors reader loads it (tested against ``safetensors.torch.load``); for one dtype the
bytes equal safetensors' own with the header sorted.

Public API:
    tensor_file_chunks(tensors, metadata) -> [header, tensor bytes...]   views, for atomic_write_bytes
    tensor_file_bytes(tensors, metadata) -> bytes
    read_metadata(path) -> dict[str, str]       the header's metadata only (safetensors.safe_open)
"""

from __future__ import annotations

import json
import os
import struct
import sys
from collections.abc import Mapping

# torch dtype name -> safetensors dtype code (the ones wdsp writes; others go through safetensors)
_DTYPES = {"float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64",
           "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL"}


def _canonical_header(header: dict) -> bytes:
    """8-byte little-endian length, then the JSON header with sorted keys and compact separators,
    space-padded so the data starts at a multiple of 8."""
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-(8 + len(text)) % 8)
    return struct.pack("<Q", len(text)) + text


def tensor_file_chunks(tensors: Mapping, metadata: Mapping[str, str] | None = None) -> list:
    """The file as chunks: its canonical header, then each tensor's bytes in name order, as views
    of the tensors themselves (nothing is copied: a d x d statistics file needs no second d x d
    buffer). ``tensors``: name -> CPU tensor (made contiguous); ``metadata``: str -> str.
    Dtypes outside the common ones go through ``safetensors.torch.save`` and a re-sorted header."""
    import torch

    names = sorted(tensors)
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    if sys.byteorder != "little" or any(str(tensors[n].dtype).removeprefix("torch.") not in _DTYPES for n in names):
        return _through_safetensors(tensors, meta)
    header: dict = {"__metadata__": meta} if meta else {}
    chunks, offset = [], 0
    for name in names:
        tensor = tensors[name].detach().to("cpu").contiguous()
        data = tensor.reshape(-1).view(torch.uint8).numpy() if tensor.numel() else b""
        size = tensor.numel() * tensor.element_size()
        header[name] = {"dtype": _DTYPES[str(tensor.dtype).removeprefix("torch.")], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + size]}
        chunks.append(memoryview(data).cast("B") if size else b"")
        offset += size
    return [_canonical_header(header), *chunks]


def _through_safetensors(tensors: Mapping, metadata: dict) -> list:
    from safetensors.torch import save

    raw = save({name: tensors[name] for name in sorted(tensors)}, metadata=metadata or None)
    (length,) = struct.unpack("<Q", raw[:8])
    return [_canonical_header(json.loads(raw[8:8 + length])), memoryview(raw)[8 + length:]]


def tensor_file_bytes(tensors: Mapping, metadata: Mapping[str, str] | None = None) -> bytes:
    return b"".join(tensor_file_chunks(tensors, metadata))


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of a safetensors file, from its header alone and without torch (``wdsp
    status`` stays fast); raises ValueError on a torn file: a header that does not parse, or tensor
    data that does not end where the file does."""
    import json
    import struct

    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise ValueError(f"{path}: {size} bytes, too short for a safetensors header")
        (length,) = struct.unpack("<Q", prefix)
        if 8 + length > size:
            raise ValueError(f"{path}: its header claims {length} bytes, the file has {size}")
        header = json.loads(handle.read(length))
    ends = [entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"]
    if 8 + length + max(ends, default=0) != size:
        raise ValueError(f"{path}: the tensor data ends at {8 + length + max(ends, default=0)} bytes, the file at {size}")
    return dict(header.get("__metadata__") or {})
