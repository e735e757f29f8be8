"""Memory of one Sinkhorn WD loss and its backward on B rows of d entries (issue 6), two ways in one run:

  * ``solved_in_chunks``: ``sinkhorn_1d`` (16 rows per solve, only [B, d] tensors kept for backward);
  * ``plan_times_cost``:  one solve of all rows and autograd through <stopgrad(P), C(x, y)>, the
    formula it replaced, which keeps the [B, d, d] plan and cost for backward.

    .venv/bin/python benchmarks/sinkhorn_memory.py [--rows 50] [--dim 576]

Prints one JSON line: per variant the peak RSS increase during loss and backward (VmHWM, reset
first), the bytes autograd saved for backward (distinct storages), and seconds.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from perf import peak_rss_bytes, reset_peak_rss  # noqa: E402

from wdsp_cli.regularisers.wasserstein import _cost, sinkhorn_1d, sinkhorn_potentials_1d  # noqa: E402


def saved_bytes(fn):
    """(fn(), bytes of the distinct storages autograd saved for backward while fn ran)."""
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        return fn(), sum(storages.values())


def rss_bytes() -> int:
    return int(re.search(r"VmRSS:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024


def plan_times_cost(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    P = sinkhorn_potentials_1d(x.detach(), y.detach(), 0.05, 100, 1e-4)[0]
    return (P.to(x.dtype) * _cost(x, y)).sum(dim=(-1, -2))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=50)
    ap.add_argument("--dim", type=int, default=576)
    args = ap.parse_args()
    generator = torch.Generator().manual_seed(0)
    h = 3 * torch.randn(args.rows, args.dim, generator=generator)
    report = {"rows": args.rows, "dim": args.dim}
    for name, loss_fn in (("solved_in_chunks", sinkhorn_1d), ("plan_times_cost", plan_times_cost)):
        delta = (0.3 * torch.randn(args.rows, args.dim, generator=generator)).requires_grad_(True)
        base = rss_bytes()
        reset_peak_rss()
        clock = time.perf_counter()
        loss, held = saved_bytes(lambda d=delta: loss_fn(h, h + d))
        loss.sum().backward()
        report[name] = {"peak_increase_bytes": peak_rss_bytes() - base, "held_for_backward_bytes": held,
                        "seconds": time.perf_counter() - clock}
        del loss, delta
    print(json.dumps(report))


if __name__ == "__main__":
    main()
