"""What a figure was measured on: the CPU's model and the vector flags that decide torch's kernels.

    cpu_description() -> {"model": "AMD EPYC", "flags": ["avx2", "avx512_bf16", ...], "cores": 2}
"""

from __future__ import annotations

import os
import re
from pathlib import Path


def cpu_description() -> dict:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    model = re.search(r"model name\s*:\s*(.*)", text)
    flags = sorted(set(re.findall(r"\b(avx512[a-z_0-9]*|amx[a-z_0-9]*|avx2)\b", text)))
    return {"model": model.group(1).strip() if model else "unknown", "flags": flags, "cores": os.cpu_count()}
