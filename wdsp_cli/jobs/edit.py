"""Editing requests into a workspace: one committed iteration per batch, resumable.

Public API:
    job_id(requests, config, batch_size) -> str
    plan_edit(workspace, requests, config, batch_size, resume=True) -> EditPlan
    run_edit(workspace, requests, config, batch_size, resume=True, progress=None, source="") -> dict

A *job* is (requests, configuration, batch size); its batches are requests[i*B:(i+1)*B]. Each
committed iteration records its job id and batch index, so running the same job again skips the
batches already committed at the end of the history (a resume after a crash or a kill) and
fast-forwards HEAD over ones committed after HEAD by the same job. Editing after a rollback
moves the iterations after HEAD to archive/ (reported, never deleted) just before the first
commit: an edit that fails before it changes nothing in the workspace.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..config import EditConfig
from ..data.conflicts import replaced_targets
from ..data.requests import EditRequest, request_to_dict
from ..errors import InputError
from ..workspace.store import Workspace, now

Progress = Callable[[str, dict], None]


def _gate_check(workspace: Workspace, gate, current, batch, t: int, edit, record: dict, before, progress) -> dict:
    """Measure the edited model for ``gate``; on a miss, set the candidate aside, restore the
    weights ``before`` and raise GateRefused. Returns the figures (with their seconds)."""
    from ..errors import GateRefused
    from .evaluate import health_sample, measure

    clock = time.perf_counter()
    progress("gate", {"iteration": t})
    edited = [workspace.requests(s) for s in range(1, t)] + [batch] if gate.retention is not None else None
    figures = measure(current, batch, edited, gate.sample,
                      health_sample(workspace, current) if gate.needs_health else None)
    figures = {**figures, "gate": {**gate.to_dict(), "failures": gate.failures(figures)},
               "seconds": round(time.perf_counter() - clock, 2)}
    if figures["gate"]["failures"]:
        folder = workspace.set_aside(t, edit.diff, batch, {**record, "gate": figures}, keys=edit.keys)
        current.state.restore(before)
        raise GateRefused(f"iteration {t} did not pass the gate: " + "; ".join(figures["gate"]["failures"])
                          + f". HEAD stays at {t - 1}; the candidate is in {folder}",
                          hint="look at its requests and figures (record.json there), fix the facts and edit "
                               "again, or change the thresholds (--gate-efficacy, --gate-perplexity, ...)")
    return figures


def anchor_reference(workspace: Workspace, config: EditConfig) -> float | None:
    """Norm anchoring's reference norm for ``config``'s method and z-layer: the one the first
    anchored iteration at or before HEAD measured on the base model (its record's report), else
    None (the next batch measures it)."""
    for t in range(1, workspace.head + 1):
        record = workspace.record(t)
        anchored = record.get("report", {}).get("norm_anchor")
        same = record["config"].get("method") == config.method and record["config"]["layers"][-1] == config.z_layer
        if anchored and same:
            return anchored["reference"]
    return None


def job_id(requests: Sequence[EditRequest], config: EditConfig, batch_size: int) -> str:
    """sha256 of the requests (their ``source`` excluded: moving the file keeps the job), the
    configuration and the batch size."""
    content = {"requests": [{k: v for k, v in request_to_dict(r).items() if k != "source"} for r in requests],
               "config": config.identity(), "batch_size": batch_size}
    return "sha256:" + hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


@dataclass
class EditPlan:
    job: str
    batches: list[list[EditRequest]]
    done: int               # batches committed at iterations <= HEAD (after any fast-forward)
    fast_forward: list[int]  # committed iterations after HEAD that this job already made
    to_archive: list[int]    # iterations after HEAD that an edit would set aside


def plan_edit(workspace: Workspace, requests: Sequence[EditRequest], config: EditConfig, batch_size: int,
              resume: bool = True) -> EditPlan:
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}", hint="e.g. --batch-size 20")
    if not requests:
        raise InputError("no requests to edit", hint="give a facts file with at least one record")
    ident = job_id(requests, config, batch_size)
    batches = [list(requests[i : i + batch_size]) for i in range(0, len(requests), batch_size)]
    head, committed = workspace.head, workspace.iterations()

    def batch_of(t: int) -> int | None:
        job = workspace.record(t).get("job", {})
        return job.get("batch") if job.get("id") == ident else None

    done = 0
    if resume:
        trail = []
        t = head
        while t >= 1 and batch_of(t) is not None:
            trail.append(batch_of(t))
            t -= 1
        trail.reverse()
        done = len(trail) if trail == list(range(len(trail))) else 0
    fast_forward = []
    t = head + 1
    while resume and done + len(fast_forward) < len(batches) and t in committed \
            and batch_of(t) == done + len(fast_forward):
        fast_forward.append(t)
        t += 1
    after = [x for x in committed if x > head + len(fast_forward)]
    remaining = len(batches) - done - len(fast_forward)
    return EditPlan(ident, batches, done + len(fast_forward), fast_forward, after if remaining else [])


def run_edit(workspace: Workspace, requests: Sequence[EditRequest], config: EditConfig, batch_size: int,
             resume: bool = True, progress: Progress | None = None, source: str = "", current=None,
             requests_per_pass: int | None = None, gate=None) -> dict:
    """Edit every batch not yet committed; call under ``workspace.lock()``. Returns a report:
    job, batches, skipped, fast_forwarded, archived (+ archive folder), iterations (one summary each).
    ``current``: a ``checkout.Checkout`` at HEAD to edit (kept loaded by the benchmark); it is
    moved forward with the workspace. Without it the model is loaded. ``requests_per_pass``: the
    optimisation's memory bound (``editing.edit_batch``); not part of the job, it changes no result.
    ``gate``: a ``jobs.gate.Gate``: each batch is measured before it is committed (the figures are
    stored as its evaluation); a batch that misses it is set aside in rejected/, its weights are
    taken back, and GateRefused (exit 8) stops the job before HEAD moves."""
    from ..editing.batch import edit_batch, edited_modules
    from ..methods import method
    from ..model.hardware import engine_description
    from ..workspace.checkout import (
        checkout,
        context_templates,
        load_base,
        template_key,
    )
    from .statistics import load_second_moments

    progress = progress or (lambda event, data: None)
    plan = plan_edit(workspace, requests, config, batch_size, resume)
    report = {"job": plan.job, "batches": len(plan.batches), "skipped": plan.done - len(plan.fast_forward),
              "fast_forwarded": plan.fast_forward, "archived": [], "archive": None, "iterations": []}
    if plan.fast_forward:
        workspace.set_head(plan.fast_forward[-1])
    if plan.done == len(plan.batches):
        report["head"] = workspace.head
        return report
    moments = load_second_moments(workspace, config.layers)  # fail before loading the model
    editor = method(config.method)
    method_state = editor.start(config, moments, WorkspaceHistory(workspace, workspace.head))
    if current is None:
        current = checkout(workspace, 0, base=load_base(workspace))
    elif current.iteration > workspace.head:
        raise ValueError(f"the checkout is at iteration {current.iteration}, past HEAD {workspace.head}")
    with current.state.original_weights():  # templates are sampled from the base model
        templates, new_templates = context_templates(workspace, current.model, current.tokenizer, config)
    current.advance_to(workspace, workspace.head)
    tokenizer = current.tokenizer
    anchor = anchor_reference(workspace, config) if config.norm.anchor else None
    from .conflicts import committed_requests

    # the facts in force, oldest first: a request that changes one of them gets more optimisation steps
    in_force = [r for _, batch in committed_requests(workspace)[0] for r in batch]
    for index in range(plan.done, len(plan.batches)):
        batch = plan.batches[index]
        t = workspace.head + 1
        progress("iteration", {"iteration": t, "batch": index + 1, "batches": len(plan.batches),
                               "requests": len(batch), "steps": config.v_num_grad_steps})
        clock = time.perf_counter()
        before = current.state.snapshot(edited_modules(current.model, config)) if gate is not None else None
        edit = edit_batch(current.model, tokenizer, batch, config, moments, templates, current.state,
                          iteration=t, on_step=lambda step, active: progress("step", {"step": step, "active": active}),
                          method_state=method_state, requests_per_pass=requests_per_pass, anchor_reference=anchor,
                          replaced=replaced_targets(in_force, batch))
        seconds = time.perf_counter() - clock
        target_norms = list(edit.report["delta_norm"].values())[-1]
        sp = edit.report["sp"]
        summary = {
            "iteration": t, "batch": index + 1, "requests": len(batch), "seconds": round(seconds, 2),
            "mean_delta_norm": sum(target_norms) / len(target_norms),
            "mean_final_nll": sum(edit.report["nll"]) / len(edit.report["nll"]),
            "sp_density": sum(sp["density"]) / len(sp["density"]) if sp else None,
            "factor_bytes": edit.diff.nbytes, "dense_bytes": edit.diff.dense_nbytes,
            "layers": [{"layer": r["layer"], "update_norm": r["update_norm"]} for r in edit.report["layers"]],
        }
        record = {"config": config.to_dict(), "job": {"id": plan.job, "batch": index, "batches": len(plan.batches),
                                                      "source": source},
                  "summary": summary, "report": edit.report,
                  "engine": engine_description(str(next(current.model.parameters()).device))}
        figures = None
        if gate is not None:
            figures = _gate_check(workspace, gate, current, batch, t, edit, record, before, progress)
        if index == plan.done:  # the first write of this run: nothing changes before it
            report["archived"], folder = workspace.archive_after(workspace.head)
            report["archive"] = str(folder) if folder else None
        workspace.commit_iteration(t, edit.diff, batch, record, keys=edit.keys)
        if config.norm.anchor and anchor is None:  # measured on the base model with this batch, kept in its record
            anchor = edit.report["norm_anchor"]["reference"]
        method_state = editor.advance(method_state, edit.keys)
        in_force += batch
        if index == plan.done:
            workspace.save_config(config)
            if new_templates:
                workspace.save_templates(template_key(config), templates)
        current.iteration = t
        if figures is not None:  # the gate measured it: stored as the iteration's evaluation
            workspace.save_evaluation(t, {"iteration": t, "evaluated_at": now(), **figures})
            summary["gate"] = "passed"
        summary["diff_bytes"] = workspace.record(t)["diff_bytes"]
        report["iterations"].append(summary)
        progress("committed", summary)
    report["head"] = workspace.head
    return report


class WorkspaceHistory:
    """A workspace's iterations 1..``head`` as a method reads them (``methods.base.MethodHistory``)."""

    def __init__(self, workspace: Workspace, head: int) -> None:
        self.workspace, self.head = workspace, head

    def iteration_keys(self):
        for t in range(1, self.head + 1):
            yield self.workspace.keys(t)

    def derived(self, name: str, layer: int, params: dict, compute):
        from .statistics import load_derived

        return load_derived(self.workspace, name, layer, params, compute)
