"""POT against the hand-written WD solvers, on the target optimisation's shapes (B rows of d).

    .venv/bin/python benchmarks/pot_wasserstein.py [--rows 20] [--dim 576] [--repeats 20]

exact:    ``wasserstein_1d_pp`` (sorted coordinates) against POT's differentiable
          ``ot.wasserstein_1d`` (torch backend, values along axis 0: the rows transposed);
sinkhorn: ``sinkhorn_1d`` (log-domain, eps = reg * mean(C) per row, warm-startable, no [B, d, d]
          kept for backward) against POT's batched ``ot.solve_batch`` (Sinkhorn, envelope gradient)
          with the same eps per problem where POT takes one (a scalar: the batch's mean).
Prints one JSON line: per solver the median seconds of forward + backward, the largest difference of
values and gradients from ours, the peak memory the call adds (tracemalloc does not see torch, so
the RSS high-water mark on Linux), and the CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_description  # noqa: E402

from wdsp_cli.regularisers.wasserstein import _cost, sinkhorn_1d, wasserstein_1d_pp  # noqa: E402


def timed(fn, x, y, repeats):
    times, value, grad = [], None, None
    for _ in range(repeats):
        xs = x.clone().requires_grad_(True)
        clock = time.perf_counter()
        value = fn(xs, y)
        value.sum().backward()
        times.append(time.perf_counter() - clock)
        grad = xs.grad
    return statistics.median(times), value.detach(), grad


def main() -> None:
    import ot

    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=20)
    ap.add_argument("--dim", type=int, default=576)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--reg", type=float, default=0.05)
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    h = 3 * torch.randn(args.rows, args.dim, generator=g)
    z = h + 0.3 * torch.randn(args.rows, args.dim, generator=g)

    def pot_exact(x, y):
        return ot.wasserstein_1d(x.T, y.T, p=2)

    def pot_sinkhorn(x, y):
        M = _cost(x.double(), y.double())
        eps = float(args.reg * M.detach().mean())
        return ot.solve_batch(M, reg=eps, max_iter=100, tol=1e-4, grad="envelope").value_linear.to(x.dtype)

    report = {"rows": args.rows, "dim": args.dim, "cpu": cpu_description(), "torch_threads": torch.get_num_threads(),
              "pot": ot.__version__}
    for name, ours, theirs in (("exact", wasserstein_1d_pp, pot_exact),
                               ("sinkhorn", lambda x, y: sinkhorn_1d(x, y, args.reg), pot_sinkhorn)):
        t_ours, v_ours, g_ours = timed(ours, z, h, args.repeats)
        t_pot, v_pot, g_pot = timed(theirs, z, h, args.repeats)
        report[name] = {"ours_s": t_ours, "pot_s": t_pot, "pot_over_ours": t_pot / t_ours,
                        "max_value_diff": float((v_ours - v_pot).abs().max()),
                        "max_relative_value_diff": float(((v_ours - v_pot).abs() / v_ours.abs()).max()),
                        "max_grad_diff": float((g_ours - g_pot).abs().max()),
                        "bit_identical": bool(torch.equal(v_ours, v_pot) and torch.equal(g_ours, g_pot))}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
