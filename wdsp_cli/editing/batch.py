"""One batch of a locate-then-edit method (MEMIT, PMET, AlphaEdit): requests in, a weight diff out.

Public API:
    BatchEdit             the diff, the optimised residuals, the batch's keys and a report
    edit_batch(model, tokenizer, requests, config, second_moments, context_templates, state=None,
               method_state=None, ...)   optimise_targets, then write_targets
    optimise_targets(model, tokenizer, requests, config, context_templates, ...) -> ResidualResult
    write_targets(model, tokenizer, requests, config, residuals, second_moments, context_templates, ...)
    edited_modules(model, config)  the weights an edit touches

Algorithm (method.md sections 1-2), for edited layers l_1 < ... < l_n and the method M
(``methods.method(config.method)``):
  1. optimise the target values Z at M's points of the z-layer l_n, with the WD term in the loss
     when ``config.wd.enabled`` (``optimisation.targets``, ``regularisers.wasserstein``); requests
     with the same subject and the same prompt text before it share a key, so they share one delta,
     optimised for all of them (``optimisation.targets.shared_key_groups``; docs/conflicts.md); a
     request that changes a fact in force gets ``changed_fact_steps`` x the steps (``optimisation_steps``);
  0. norm budget (``config.norm.budget``): every edited matrix whose accumulated update has
     passed it is shrunk towards the base weights first (``regularisers.norm_budget``);
  2. SP (``config.sp.enabled``): each request's delta at M's target point is pruned and dropped
     out before Z = h + delta (``regularisers.sparsify``; dropout seeded by (seed, iteration));
     norm anchoring (``config.norm.anchor``): each z_i rescaled to the norm of the base model's
     value there (``regularisers.norm_anchor``);
  3. for i = 1..n on layer l = l_i, with the model as updated so far:
     K = keys at l [B, d_in], V = current value at the target point [B, d],
     R = (Z - V) / M.spread(n - i), (left, right) = M.update(l, R, K, C_l, state),
     W_l += left @ right^T (through ``WeightState``, in float32, cast once).
The model is edited in place. If anything fails, every touched weight is put back.
Step 1 alone can be replaced, e.g. by the per-request oracle of the tests and benchmarks
(``optimisation.reference.optimise_each_request``) followed by ``write_targets``.
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
from ..methods import method
from ..model.architectures import template_for
from ..model.weights import LayerUpdate, WeightDiff, WeightState
from ..optimisation.targets import (
    OptimisationSettings,
    ResidualResult,
    build_edit_prompts,
    optimise_residuals,
    shared_key_groups,
)
from ..regularisers.norm_anchor import anchored_targets, reference_norm
from ..regularisers.norm_budget import apply_norm_budget
from ..regularisers.sparsify import sparsify
from ..regularisers.wasserstein import WassersteinRegulariser
from .keys import compute_keys

log = logging.getLogger(__name__)


@dataclass
class BatchEdit:
    """The diff, the optimised residuals, each edited layer's keys [B, d_in] (stored with every
    iteration: AlphaEdit's state for later batches) and a report."""

    diff: WeightDiff
    residuals: ResidualResult
    report: dict = field(default_factory=dict)
    keys: dict[int, torch.Tensor] = field(default_factory=dict)


def edited_modules(model, config: EditConfig) -> list[str]:
    """Names of the MLP output projections ``config`` edits in ``model`` (for snapshots)."""
    template = template_for(model)
    return [template.mlp_out_name(l) for l in config.layers]


def wd_regulariser(config: EditConfig, points: Sequence[str]) -> WassersteinRegulariser | None:
    """The WD term the config asks for (PMET: on delta_mlp, the last point, unless points="all")."""
    wd = config.wd
    if not wd.enabled:
        return None
    chosen = tuple(points) if wd.points == "all" else (points[-1],)
    return WassersteinRegulariser(mode=wd.mode, scale=wd.scale, weight=wd.lambda_weight, points=chosen,
                                  reg=wd.reg, counts_for_stopping=wd.counts_for_stopping)


def sp_generator(config: EditConfig, iteration: int) -> torch.Generator:
    """SP's dropout generator for one iteration: same seed and iteration, same masks."""
    return torch.Generator().manual_seed(config.seed * 1_000_003 + iteration)


def _check_statistics(config: EditConfig, second_moments: Mapping[int, torch.Tensor]) -> None:
    missing = [l for l in config.layers if l not in second_moments]
    if missing:
        raise StatisticsError(f"no covariance statistics for layer(s) {missing}",
                              hint="compute them first (wdsp covariance)")


def optimise_targets(model, tokenizer, requests: Sequence[EditRequest], config: EditConfig,
                     context_templates: Sequence[str], on_step: Callable[[int, int], None] | None = None,
                     requests_per_pass: int | None = None,
                     replaced: Sequence[str | None] | None = None) -> ResidualResult:
    """Step 1: the batched target optimisation at the method's points, WD included.

    on_step(step, still_active): progress. requests_per_pass: requests per forward/backward
    (None: the default, 20; 0: all at once); bounds memory, the result does not depend on it.
    replaced[i]: the target in force that request i changes (``data.conflicts.replaced_targets``;
    None for most): such a request gets ``changed_fact_steps`` x the steps (``optimisation_steps``)."""
    points = method(config.method).points(template_for(model), config.z_layer)
    groups = shared_key_groups(requests)
    prompts = build_edit_prompts(tokenizer, requests, context_templates, config.kl_prompt, groups)
    settings = OptimisationSettings.from_config(config, requests_per_pass)
    steps = optimisation_steps(config, groups, replaced)
    result = optimise_residuals(model, prompts, points, settings, wd_regulariser(config, points), on_step, steps)
    return result.expanded(groups) if len(set(groups)) < len(requests) else result


def optimisation_steps(config: EditConfig, groups: Sequence[int],
                       replaced: Sequence[str | None] | None) -> torch.Tensor | None:
    """Forward passes per optimised group [G]: ``v_num_grad_steps``, or for a group holding a request
    that changes a fact in force round(``changed_fact_steps`` x that), since its value starts from
    the old edit's, further from the new target (docs/conflicts.md). None when no request does."""
    if not replaced or all(old is None for old in replaced) or config.changed_fact_steps == 1:
        return None
    steps = torch.full((max(groups) + 1,), config.v_num_grad_steps, dtype=torch.long)
    longer = max(1, round(config.changed_fact_steps * config.v_num_grad_steps))
    for g, old in zip(groups, replaced):
        if old is not None:
            steps[g] = max(int(steps[g]), longer)
    return steps


def write_targets(model, tokenizer, requests: Sequence[EditRequest], config: EditConfig, residuals: ResidualResult,
                  second_moments: Mapping[int, torch.Tensor], context_templates: Sequence[str],
                  state: WeightState | None = None, method_state=None, iteration: int = 1,
                  decays: Mapping[str, float] | None = None, anchor_reference: float | None = None) -> BatchEdit:
    """Steps 2-3: SP, then per layer keys, the method's update and its application.

    second_moments: layer -> C_l [d_in, d_in] for every layer in ``config.layers``.
    method_state: the method's state (``Method.start``; None: a fresh one from ``second_moments``).
    iteration: the iteration number (seeds SP's dropout).
    decays: {module: s} the norm budget already applied to ``state`` (recorded in the diff).
    anchor_reference: norm anchoring's reference norm a (None: from this batch, which must have
    been solved on the base model)."""
    _check_statistics(config, second_moments)
    editor = method(config.method)
    if method_state is None:
        method_state = editor.start(config, second_moments)
    template = template_for(model)
    state = state or WeightState(model)
    modules = edited_modules(model, config)
    timings: dict[str, float] = {"keys": 0.0, "solve": 0.0, "apply": 0.0}
    target_point = editor.target(template, config.z_layer)
    generator = sp_generator(config, iteration)
    solved_delta = residuals.delta[target_point]  # before SP: the solved values anchoring is measured on
    sp, sp_report = config.sp, None
    if sp.enabled and sp.target == "delta":
        sparse = sparsify(residuals.delta[target_point], sp.prune, sp.dropout, generator)
        residuals.delta[target_point] = sparse.delta
        sp_report = {"density": sparse.density.tolist(), "norm": sparse.norm.tolist()}
    targets = residuals.target(target_point)  # Z [B, d]
    snapshot = state.snapshot(modules)
    anchor_report = None
    if config.norm.anchor:  # v* = v0 + delta at the z-layer's MLP output, rescaled to the reference norm
        delta = residuals.delta[target_point]
        mlp_values = compute_keys(model, tokenizer, requests, ["{}"], modules[-1], modules[-1])[1].to(delta.device)
        if anchor_reference is None:  # this batch was solved on the base model (edit_batch makes sure)
            anchor_reference = reference_norm(mlp_values + solved_delta)
        solved = (mlp_values + delta).norm(dim=1)
        targets = anchored_targets(targets, mlp_values, delta, anchor_reference)
        anchor_report = {"reference": anchor_reference, "solved_norm": solved.tolist()}

    updates, layer_reports, batch_keys = [], [], {}
    try:
        for i, (layer, module) in enumerate(zip(config.layers, modules)):
            clock = time.perf_counter()
            keys, values = compute_keys(model, tokenizer, requests, context_templates, module, target_point)
            timings["keys"] += time.perf_counter() - clock
            clock = time.perf_counter()
            residual = (targets.to(values.device) - values).to(keys.device) / editor.spread(len(config.layers) - i)
            if sp.enabled and sp.target == "layer-residuals":  # variant, not the paper
                residual = sparsify(residual, sp.prune, sp.dropout, generator).delta
            cov = second_moments[layer]
            if cov.shape != (keys.shape[1], keys.shape[1]):
                raise StatisticsError(f"covariance of layer {layer} is {tuple(cov.shape)}, keys have "
                                      f"dimension {keys.shape[1]}", hint="recompute statistics for this model")
            left, right = editor.update(layer, residual, keys, cov.to(keys.device), method_state, config)
            batch_keys[layer] = keys.detach().to("cpu", torch.float32)
            update = LayerUpdate(module, left, right, (decays or {}).get(module, 1.0))
            if not update.is_finite():
                raise EditError(f"the update of {module} is not finite",
                                hint="check covariance statistics and --set mom2_update_weight=")
            timings["solve"] += time.perf_counter() - clock
            clock = time.perf_counter()
            state.add(update)
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
        "updates": residuals.updates.tolist(),
        "loss": residuals.loss.tolist(),
        "nll": residuals.nll.tolist(),
        "delta_norm": {p: residuals.delta[p].norm(dim=1).tolist() for p in residuals.points},
        "sp": sp_report,
        **({"norm_anchor": anchor_report} if anchor_report else {}),
    }
    return BatchEdit(WeightDiff(tuple(updates), {"method": config.method}), residuals, report, batch_keys)


def edit_batch(model, tokenizer, requests: Sequence[EditRequest], config: EditConfig,
               second_moments: Mapping[int, torch.Tensor], context_templates: Sequence[str],
               state: WeightState | None = None, method_state=None, iteration: int = 1,
               on_step: Callable[[int, int], None] | None = None,
               requests_per_pass: int | None = None, anchor_reference: float | None = None,
               replaced: Sequence[str | None] | None = None) -> BatchEdit:
    """Edit ``model`` in place with one batch; returns the diff that reproduces the edit.
    (``optimise_targets`` then ``write_targets``; see both for the parameters; the report lists
    the requests that change a fact in force under ``changed_facts``.) With norm
    anchoring and no ``anchor_reference`` on an edited model, the batch is solved once more on
    the base weights to measure it (``anchor_reference_on_base``); the report holds it."""
    if not requests:
        raise EditError("no requests to edit", hint="give at least one request")
    _check_statistics(config, second_moments)
    state = state or WeightState(model)
    snapshot = state.snapshot(edited_modules(model, config))
    try:
        decays = None
        if config.norm.budget is not None:  # before the targets: they are solved on the shrunk model
            decays = apply_norm_budget(state, edited_modules(model, config), config.norm.budget)
        if config.norm.anchor and anchor_reference is None and not state.is_original():
            anchor_reference = anchor_reference_on_base(model, tokenizer, requests, config, context_templates,
                                                        state, requests_per_pass)
        clock = time.perf_counter()
        residuals = optimise_targets(model, tokenizer, requests, config, context_templates, on_step,
                                     requests_per_pass, replaced)
        optimise = time.perf_counter() - clock
        edit = write_targets(model, tokenizer, requests, config, residuals, second_moments, context_templates,
                             state, method_state, iteration, decays, anchor_reference)
    except BaseException:
        state.restore(snapshot)
        raise
    edit.report["timings_s"] = {"optimise": optimise, **edit.report["timings_s"]}
    if decays is not None:
        edit.report["norm_budget_decay"] = decays
    if replaced and any(old is not None for old in replaced):
        edit.report["changed_facts"] = [{"request": i, "request_id": r.request_id, "replaced": old,
                                         "updates": int(edit.residuals.updates[i])}
                                        for i, (r, old) in enumerate(zip(requests, replaced)) if old is not None]
    log.info("edited %d requests with %s in %.1fs", len(requests), config.method,
             sum(edit.report["timings_s"].values()))
    return edit


def anchor_reference_on_base(model, tokenizer, requests: Sequence[EditRequest], config: EditConfig,
                             context_templates: Sequence[str], state: WeightState,
                             requests_per_pass: int | None = None) -> float:
    """Norm anchoring's reference a, measured on the base weights: the batch's targets solved
    there, a = ``reference_norm`` of v* = v0 + delta at the z-layer's MLP output."""
    point = method(config.method).target(template_for(model), config.z_layer)
    module = edited_modules(model, config)[-1]
    with state.original_weights():
        residuals = optimise_targets(model, tokenizer, requests, config, context_templates, None, requests_per_pass)
        values = compute_keys(model, tokenizer, requests, ["{}"], module, module)[1]
    return reference_norm(values.to(residuals.delta[point].device) + residuals.delta[point])
