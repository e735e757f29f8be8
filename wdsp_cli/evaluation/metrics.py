"""Pure editing metrics from per-prompt scores (method.md section 6).

Public API:
    success_rate(better) -> %          mean of booleans, in percent
    harmonic_mean(values) -> float      0 if any value is 0
    counterfact_metrics(new, true, ...) ES/PS/NS successes and magnitudes, Score

CounterFact (ROME): with s(p, o) the length-normalised mean token NLL of " " + o after p,
  ES = mean_i [s(p_i, o*_i) < s(p_i, o_i)]               efficacy (rewrite prompt)
  PS = mean_i mean_{p in para_i} [s(p, o*_i) < s(p, o_i)]  generalisation
  NS = mean_i mean_{p in neigh_i} [s(p, o_i) < s(p, o*_i)] locality
  EM, PM, NM: the same with exp(-s) differences instead of indicators
  Score = harmonic mean of ES, PS, NS (%).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def success_rate(better: torch.Tensor) -> float:
    return 100.0 * float(better.float().mean()) if better.numel() else float("nan")


def harmonic_mean(values: Sequence[float]) -> float:
    values = [v for v in values if v == v]  # drop NaN (a metric without data)
    if not values:
        return float("nan")
    if any(v <= 0 for v in values):
        return 0.0
    return len(values) / sum(1.0 / v for v in values)


def _grouped_mean(values: torch.Tensor, groups: torch.Tensor, n: int) -> torch.Tensor:
    """Mean of ``values`` per group id in [0, n) (NaN for empty groups)."""
    total = torch.zeros(n, dtype=torch.float64).index_add(0, groups, values.double())
    count = torch.zeros(n, dtype=torch.float64).index_add(0, groups, torch.ones_like(values, dtype=torch.float64))
    return total / count


def counterfact_metrics(rewrite_new: torch.Tensor, rewrite_true: torch.Tensor,
                        para_new: torch.Tensor, para_true: torch.Tensor, para_request: torch.Tensor,
                        neigh_new: torch.Tensor, neigh_true: torch.Tensor, neigh_request: torch.Tensor) -> dict:
    """Mean NLLs: rewrite_* [B]; para_* [P] with request ids para_request [P]; neigh_* [N] likewise."""
    n = rewrite_new.shape[0]
    out = {
        "efficacy": success_rate(rewrite_new < rewrite_true),
        "efficacy_magnitude": 100.0 * float((torch.exp(-rewrite_new) - torch.exp(-rewrite_true)).mean()),
    }
    for name, new, true, req, sign in (("generalization", para_new, para_true, para_request, 1),
                                       ("locality", neigh_new, neigh_true, neigh_request, -1)):
        if new.numel() == 0:
            out[name] = out[f"{name}_magnitude"] = float("nan")
            continue
        better = (new < true) if sign > 0 else (true < new)
        per_request = _grouped_mean(better.double(), req, n)
        diff = sign * (torch.exp(-new) - torch.exp(-true))
        out[name] = 100.0 * float(per_request[~per_request.isnan()].mean())
        out[f"{name}_magnitude"] = 100.0 * float(_grouped_mean(diff, req, n).nanmean())
    out["score"] = harmonic_mean([out["efficacy"], out["generalization"], out["locality"]])
    return out
