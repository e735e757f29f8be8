"""What a figure was measured on: the CPU's model and the vector flags that decide torch's kernels.

    cpu_description() -> {"model": "AMD EPYC", "flags": ["avx2", "avx512_bf16", ...], "cores": 2}
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from wdsp_cli.model.hardware import cpu_flags


def cpu_description() -> dict:
    try:
        model = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
    except OSError:
        model = None
    return {"model": model.group(1).strip() if model else "unknown", "flags": sorted(cpu_flags()),
            "cores": os.cpu_count()}
