"""What a figure was measured on: the CPU's model and the vector flags that decide torch's kernels.

    cpu_description() -> {"model": "AMD EPYC", "flags": ["avx2", "avx512_bf16", ...], "cores": 2}
"""

from __future__ import annotations

import os

from wdsp_cli.model.hardware import cpu_flags, cpu_model


def cpu_description() -> dict:
    return {"model": cpu_model(), "flags": sorted(cpu_flags()), "cores": os.cpu_count()}
