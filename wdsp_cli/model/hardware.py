"""What the machine computes natively: the reduced precision worth running the target optimisation in.

Public API:
    cpu_model() -> str                             the CPU's model name ("unknown" if unreadable)
    cpu_flags() -> set[str]                        the CPU's vector flags (avx2, avx512*, amx*); empty if unknown
    native_autocast(device="cpu", flags=None) -> "bfloat16" | None
    engine_description(device="cpu") -> dict      what computed an edit: engine version, torch, CPU, threads

bfloat16 pays only where the hardware has it: on CPUs with AMX (amx_bf16) or AVX512-BF16
(avx512_bf16) a B = 50 MEMIT edit ran 1.56x faster under bf16 autocast on an AMD EPYC with
AVX512-BF16 (benchmarks/results/edit-settings-b50-cpu2-2026-12-01.json); on AVX2-only CPUs it is
emulated. On a CUDA device, bf16 where ``torch.cuda.is_bf16_supported()``.
"""

from __future__ import annotations

import re
from pathlib import Path

NATIVE_BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_model() -> str:
    found = re.search(r"model name\s*:\s*(.*)", _cpuinfo())
    return found.group(1).strip() if found else "unknown"


def cpu_flags() -> set[str]:
    return set(re.findall(r"\b(avx512[a-z_0-9]*|amx[a-z_0-9]*|avx2)\b", _cpuinfo()))


def native_autocast(device: str = "cpu", flags: set[str] | None = None) -> str | None:
    """"bfloat16" where ``device`` computes it natively, else None (float32)."""
    if str(device).startswith("cuda"):
        import torch

        return "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else None
    return "bfloat16" if NATIVE_BF16_CPU_FLAGS & (cpu_flags() if flags is None else set(flags)) else None


def engine_description(device: str = "cpu") -> dict:
    """{"version": ENGINE_VERSION, "wdsp", "torch", "cpu", "cpu_flags", "threads", "device"}: recorded
    with every iteration. Results are bit-identical only for the same version, CPU and thread count."""
    import torch

    from .. import ENGINE_VERSION, __version__

    return {"version": ENGINE_VERSION, "wdsp": __version__, "torch": torch.__version__, "cpu": cpu_model(),
            "cpu_flags": sorted(cpu_flags()), "threads": torch.get_num_threads(), "device": str(device)}
