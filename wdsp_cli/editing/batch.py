"""One batch of a locate-then-edit method (MEMIT, PMET, AlphaEdit): requests in, a weight diff out.

Public API:
    BatchEdit             the diff, the optimised residuals and a report
    edit_batch(model, tokenizer, requests, config, second_moments, context_templates, state=None)
    edited_modules(model, config)  the weights an edit touches

Algorithm (method.md sections 1-2), for edited layers l_1 < ... < l_n:
  1. optimise the target values Z at the z-layer l_n (``residuals.optimise_residuals``);
  2. for i = 1..n on layer l = l_i, with the model as updated so far:
     K = keys at l [B, d_in], V = current value at the target point [B, d],
     R = (Z - V) / spread(n - i + 1), (left, right) = update_factors(R, K, C_l, lambda)
     (AlphaEdit: projected_update_factors(R, K, P_l, K_p K_p^T, alpha)),
     W_l += left @ right^T (through ``WeightState``, in float32, cast once).
With ``config.wd`` the WD term joins the optimisation's loss (``wasserstein``); with
``config.sp`` each request's delta at the target point is pruned and dropped out before
Z = h + delta (``sparsify``; the variant "layer-residuals" sparsifies every layer's R
instead). SP's dropout is seeded by (config.seed, iteration).
The model is edited in place. If anything fails, every touched weight is put back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from ..config import EditConfig
from ..data.requests import EditRequest
from ..errors import EditError, StatisticsError
from ..methods import method_spec
from ..methods.nullspace import null_space_projection
from ..methods.solve import projected_update_factors, update_factors
from ..model.architectures import template_for
from ..model.weights import LayerUpdate, WeightDiff, WeightState
from ..optimisation.reference import optimise_each_request
from ..optimisation.targets import (
    OptimisationSettings,
    Regulariser,
    ResidualResult,
    build_edit_prompts,
    optimise_residuals,
)
from ..regularisers.sparsify import sparsify
from ..regularisers.wasserstein import WassersteinRegulariser
from .keys import compute_keys

log = logging.getLogger(__name__)


@dataclass
class BatchEdit:
    """The diff, the optimised residuals, each edited layer's keys [B, d_in] (AlphaEdit's state for
    later batches; kept for every method) and a report."""

    diff: WeightDiff
    residuals: ResidualResult
    report: dict = field(default_factory=dict)
    keys: dict[int, torch.Tensor] = field(default_factory=dict)


def edited_modules(model, config: EditConfig) -> list[str]:
    """Names of the MLP output projections ``config`` edits in ``model`` (for snapshots)."""
    template = template_for(model)
    return [template.mlp_out_name(l) for l in config.layers]


def wd_regulariser(config: EditConfig, points: Sequence[str]) -> WassersteinRegulariser | None:
    """The WD term the config asks for (PMET: on delta_mlp, the last point, unless wd_points="all")."""
    if not config.wd:
        return None
    chosen = tuple(points) if config.wd_points == "all" else (points[-1],)
    return WassersteinRegulariser(mode=config.wd_mode, scale=config.wd_scale, weight=config.wd_lambda_weight,
                                  points=chosen, reg=config.wd_reg,
                                  counts_for_stopping=config.wd_counts_for_stopping)


def sp_generator(config: EditConfig, iteration: int) -> torch.Generator:
    """SP's dropout generator for one iteration: same seed and iteration, same masks."""
    return torch.Generator().manual_seed(config.seed * 1_000_003 + iteration)


def edit_batch(model, tokenizer, requests: Sequence[EditRequest], config: EditConfig,
               second_moments: Mapping[int, torch.Tensor], context_templates: Sequence[str],
               state: WeightState | None = None, regulariser: Regulariser | None = None,
               transform: Callable[[ResidualResult], ResidualResult] | None = None,
               iteration: int = 1, on_step: Callable[[int, int], None] | None = None,
               per_request: bool = False, projections: Mapping[int, torch.Tensor] | None = None,
               previous_keys: Mapping[int, torch.Tensor] | None = None,
               requests_per_pass: int | None = None) -> BatchEdit:
    """Edit ``model`` in place with one batch; returns the diff that reproduces the edit.

    second_moments: layer -> C_l [d_in, d_in] for every layer in ``config.layers``.
    regulariser: overrides the WD term built from ``config``.
    transform: applied to the optimised residuals before SP and spreading.
    iteration: the iteration number (seeds SP's dropout).
    on_step(step, still_active): progress of the target optimisation.
    per_request: optimise each request alone with the straightforward loop (``reference``), the
        baseline of benchmarks/perf.py; no regulariser.
    projections: AlphaEdit, layer -> null-space projection P (computed from ``second_moments``
        with ``config.nullspace_threshold`` when not given: an eigendecomposition per layer).
    previous_keys: AlphaEdit, layer -> K_p K_p^T of the earlier batches' keys (None: none).
    requests_per_pass: requests per forward/backward of the target optimisation (None: the
        default, 16; 0: all at once). Bounds memory; the result does not depend on it.
    """
    if not requests:
        raise EditError("no requests to edit", hint="give at least one request")
    missing = [l for l in config.layers if l not in second_moments]
    if missing:
        raise StatisticsError(f"no covariance statistics for layer(s) {missing}",
                              hint="compute them first (wdsp covariance)")
    spec = method_spec(config.method)
    template = template_for(model)
    state = state or WeightState(model)
    modules = edited_modules(model, config)
    timings: dict[str, float] = {"optimise": 0.0, "keys": 0.0, "solve": 0.0, "apply": 0.0}

    clock = time.perf_counter()
    prompts = build_edit_prompts(tokenizer, requests, context_templates, config.kl_prompt)
    points = spec.points(template, config.z_layer)
    regulariser = regulariser or wd_regulariser(config, points)
    settings = OptimisationSettings.from_config(config, requests_per_pass)
    if per_request:
        if regulariser is not None:
            raise EditError("the per-request reference optimisation takes no regulariser", hint="drop --wd")
        result = optimise_each_request(model, tokenizer, requests, context_templates, points, settings,
                                       config.kl_prompt)
    else:
        result = optimise_residuals(model, prompts, points, settings, regulariser, on_step)
    if transform is not None:
        result = transform(result)
    timings["optimise"] = time.perf_counter() - clock
    target_point = spec.target(template, config.z_layer)
    generator = sp_generator(config, iteration)
    sp_report = None
    if config.sp and config.sp_target == "delta":
        sparse = sparsify(result.delta[target_point], config.sp_prune, config.sp_dropout, generator)
        result.delta[target_point] = sparse.delta
        sp_report = {"density": sparse.density.tolist(), "norm": sparse.norm.tolist()}
    targets = result.target(target_point)  # Z [B, d]

    snapshot = state.snapshot(modules)
    updates, layer_reports, batch_keys = [], [], {}
    try:
        for i, (layer, module) in enumerate(zip(config.layers, modules)):
            clock = time.perf_counter()
            keys, values = compute_keys(model, tokenizer, requests, context_templates, module, target_point)
            timings["keys"] += time.perf_counter() - clock
            clock = time.perf_counter()
            residual = (targets.to(values.device) - values).to(keys.device) / spec.spread(len(config.layers) - i)
            if config.sp and config.sp_target == "layer-residuals":  # variant, not the paper
                residual = sparsify(residual, config.sp_prune, config.sp_dropout, generator).delta
            cov = second_moments[layer]
            if cov.shape != (keys.shape[1], keys.shape[1]):
                raise StatisticsError(f"covariance of layer {layer} is {tuple(cov.shape)}, keys have "
                                      f"dimension {keys.shape[1]}", hint="recompute statistics for this model")
            if config.method == "alphaedit":
                projection = projections[layer] if projections is not None and layer in projections \
                    else null_space_projection(cov.to(keys.device), config.nullspace_threshold)[0]
                previous = previous_keys.get(layer) if previous_keys is not None else None
                left, right = projected_update_factors(residual, keys, projection, previous, config.alphaedit_l2)
            else:
                left, right = update_factors(residual, keys, cov.to(keys.device), config.mom2_update_weight)
            batch_keys[layer] = keys.detach().to("cpu", torch.float32)
            update = LayerUpdate(module, left, right)
            if not update.is_finite():
                raise EditError(f"the update of {module} is not finite",
                                hint="check covariance statistics and mom2_update_weight")
            timings["solve"] += time.perf_counter() - clock
            clock = time.perf_counter()
            state.apply(update)
            timings["apply"] += time.perf_counter() - clock
            updates.append(update)
            layer_reports.append({"layer": layer, "module": module,
                                  "residual_norm": float(residual.norm(dim=1).mean()),
                                  "update_norm": float(update.dense().norm())})
    except BaseException:
        state.restore(snapshot)
        raise
    report = {
        "method": config.method,
        "requests": len(requests),
        "timings_s": timings,
        "layers": layer_reports,
        "updates": result.updates.tolist(),
        "loss": result.loss.tolist(),
        "nll": result.nll.tolist(),
        "delta_norm": {p: result.delta[p].norm(dim=1).tolist() for p in result.points},
        "sp": sp_report,
    }
    log.info("edited %d requests with %s in %.1fs", len(requests), config.method, sum(timings.values()))
    return BatchEdit(WeightDiff(tuple(updates), {"method": config.method}), result, report, batch_keys)
