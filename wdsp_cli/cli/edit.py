"""``wdsp edit``: edit a facts file into the workspace, one committed iteration per batch."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import (
    JsonOption,
    WorkspaceOption,
    emit_json,
    fmt_bytes,
    handles_errors,
    stderr,
    stdout,
)


def resolve_config(ws, method: str, preset_name: str | None, overrides: dict, settings: dict | None = None):
    """The preset (or the model's default for ``method``), then ``--set`` settings, then the named
    options given on the command line (a named option wins over --set of the same field)."""
    from ..config import default_config_for, preset
    from ..errors import InputError

    if preset_name:
        base = preset(preset_name)
        if method and base.method != method:
            raise InputError(f"preset {preset_name!r} is a {base.method} preset, not {method}",
                             hint=f"drop --method, or pick a {method} preset")
    else:
        m = ws.model
        base = default_config_for(m["model_type"], m["num_layers"], method or "memit", m.get("hidden_size"))
    config = base.replace(**{**(settings or {}), **{k: v for k, v in overrides.items() if v is not None}})
    if max(config.layers) >= ws.model["num_layers"]:
        raise InputError(f"layer {max(config.layers)} does not exist: the model has {ws.model['num_layers']} layers",
                         hint=f"use layers 0-{ws.model['num_layers'] - 1}")
    return config


@handles_errors
def edit(
    facts: Path = typer.Argument(..., help="Requests: facts JSONL (docs/facts-format.md), CounterFact or zsRE."),
    method: str = typer.Option(None, "--method", help="memit, pmet or alphaedit (default memit, or the preset's)."),
    preset: str = typer.Option(None, "--preset", help="A named preset (e.g. pmet-smollm2, memit-gptj)."),
    batch_size: int = typer.Option(20, "--batch-size", "-b", help="Requests per iteration."),
    format: str = typer.Option("auto", "--format", help="auto, facts, counterfact-rome, counterfact-easyedit, zsre-mend."),
    limit: int = typer.Option(None, "--limit", help="Edit only this many records."),
    offset: int = typer.Option(0, "--offset", help="Skip this many records first."),
    layers: str = typer.Option(None, "--layers", help="Comma-separated layers to edit (default: the method's)."),
    wd: bool = typer.Option(None, "--wd/--no-wd", help="Wasserstein distance constraint (the paper's WD)."),
    wd_mode: str = typer.Option(None, "--wd-mode", help="exact (default), sinkhorn or dirac."),
    wd_scale: str = typer.Option(None, "--wd-scale", help="nll (default) or pow10."),
    wd_weight: float = typer.Option(None, "--wd-weight", help="Weight on WD's dynamic lambda (default by scale)."),
    wd_points: str = typer.Option(None, "--wd-points", help="PMET: mlp (default) or all."),
    wd_reg: float = typer.Option(None, "--wd-reg", help="Sinkhorn's entropic regularisation, relative to the mean "
                                                      "cost (default 0.05)."),
    sp: bool = typer.Option(None, "--sp/--no-sp", help="Sparsify each request's residual (the paper's SP)."),
    sp_prune: float = typer.Option(None, "--sp-prune", help="Fraction of largest entries kept (default 0.7)."),
    sp_dropout: float = typer.Option(None, "--sp-dropout", help="Dropout rate on kept entries (default 0.3)."),
    norm_anchor: bool = typer.Option(None, "--norm-anchor/--no-norm-anchor",
                                     help="Rescale each target value to the norm of the base model's value at the "
                                          "same point (after NAS; docs/stabilisers/README.md)."),
    norm_budget: float = typer.Option(None, "--norm-budget",
                                      help="Keep every edited matrix's accumulated update within this fraction of "
                                           "its Frobenius norm, shrinking older edits (e.g. 0.05; docs/stabilisers/README.md)."),
    nullspace_threshold: float = typer.Option(None, "--nullspace-threshold",
                                              help="AlphaEdit: eigenvalue threshold of the null space (default 2e-2)."),
    alphaedit_l2: float = typer.Option(None, "--alphaedit-l2", help="AlphaEdit: alpha (default 10)."),
    steps: int = typer.Option(None, "--steps", help="Optimisation steps per batch (v_num_grad_steps)."),
    early_stop: str = typer.Option(None, "--early-stop",
                                   help="loss (default: MEMIT's loss threshold) or most-probable (also stop a "
                                        "request 3 steps after its targets are the top prediction on every prompt, "
                                        "ENCORE's MPES: faster, results change; docs/precision.md)."),
    seed: int = typer.Option(None, "--seed", help="Seed of context templates and SP's dropout."),
    settings: list[str] = typer.Option(None, "--set", metavar="NAME=VALUE",
                                       help="Any other hyper-parameter by its MEMIT name, repeatable: v_lr, "
                                            "mom2_update_weight, clamp_norm_factor, kl_factor, v_weight_decay, "
                                            "early_stop_loss, wd_counts_for_stopping, sp_target ... "
                                            "(e.g. --set v_lr=0.2 --set mom2_update_weight=5000)."),
    requests_per_pass: int = typer.Option(None, "--requests-per-pass",
                                          help="Requests optimised per forward/backward (default 20, 0: the whole "
                                               "batch): lower it to save memory; results do not change."),
    autocast: str = typer.Option(None, "--autocast",
                                 help="bfloat16, float16, none, or auto (bfloat16 where the CPU has AMX or "
                                      "AVX512-BF16 or the GPU has bf16, else none): run the target optimisation's "
                                      "forward passes under torch.autocast (faster where the hardware has the "
                                      "type; results change slightly, so the chosen type is part of the job)."),
    gate: bool = typer.Option(False, "--gate", help="Measure each batch before it is committed; one that misses "
                                                  "the thresholds is set aside in rejected/ and the command exits 8."),
    gate_efficacy: float = typer.Option(None, "--gate-efficacy", help="Gate: least batch efficacy, % (default 80)."),
    gate_perplexity: float = typer.Option(None, "--gate-perplexity",
                                          help="Gate: most held-out perplexity over the base model's (default 1.5)."),
    gate_locality: float = typer.Option(None, "--gate-locality",
                                        help="Gate: least % of unrelated prompts keeping the base's next token."),
    gate_retention: float = typer.Option(None, "--gate-retention",
                                         help="Gate: least retention Score over a sample of all edited facts."),
    gate_sample: int = typer.Option(None, "--gate-sample", help="Gate: retention sample size (default 200)."),
    resume: bool = typer.Option(True, "--resume/--no-resume",
                                help="Skip batches of this same job already committed (after a crash)."),
    on_conflict: str = typer.Option("warn", "--on-conflict",
                                    help="warn (on stderr, and under conflicts with --json) or refuse (exit 9, "
                                         "nothing edited) when requests change a fact edited before or share a "
                                         "subject within a batch (docs/conflicts.md)."),
    workspace: Path = WorkspaceOption,
    json: bool = JsonOption,
) -> None:
    """Edit FACTS into the model, batch by batch; each batch is one committed iteration.

    Rerunning the same command after a crash or a kill finishes the job. After a rollback, the
    iterations past HEAD are moved to the workspace's archive/ folder before the first new one."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from ..config import parse_settings
    from ..data.requests import load_requests
    from ..jobs.edit import run_edit
    from .common import open_workspace, plain_progress, progress_line
    from .covariance import parse_layers

    ws = open_workspace(workspace)
    # argument checks first (no torch), then the lock, then the requests: a second writer is refused at once
    config = resolve_config(ws, method, preset, {
        "layers": parse_layers(layers), "wd": wd, "wd_mode": wd_mode, "wd_scale": wd_scale, "wd_weight": wd_weight,
        "wd_points": wd_points, "wd_reg": wd_reg, "sp": sp, "sp_prune": sp_prune, "sp_dropout": sp_dropout,
        "v_num_grad_steps": steps, "early_stop": early_stop, "seed": seed, "nullspace_threshold": nullspace_threshold,
        "alphaedit_l2": alphaedit_l2, "norm_anchor": norm_anchor, "norm_budget": norm_budget},
        parse_settings(settings))
    if autocast is not None and autocast.lower() == "auto":  # resolved here: the job records the type it ran
        from ..model.hardware import native_autocast

        autocast = native_autocast((ws.model.get("placement") or {}).get("device") or "cpu") or "none"
        stderr.print(f"--autocast auto: {autocast} on this machine")
    if autocast is not None:  # "none" must be able to clear a preset's value, so not an override
        config = config.replace(autocast_dtype=None if autocast.lower() == "none" else autocast.lower())
    if requests_per_pass is not None and requests_per_pass < 0:  # OptimisationSettings says so too, but needs torch
        from ..errors import InputError

        raise InputError(f"requests per pass must be >= 0, not {requests_per_pass}",
                         hint="give a positive number, or 0 for the whole batch at once")
    thresholds = {"efficacy": gate_efficacy, "perplexity_ratio": gate_perplexity, "locality": gate_locality,
                  "retention": gate_retention, "sample": gate_sample}
    chosen = None
    if gate or any(v is not None for v in thresholds.values()):  # any threshold asks for the gate
        from ..jobs.gate import Gate

        chosen = Gate(**{k: v for k, v in thresholds.items() if v is not None})
    from .conflicts import ON_CONFLICT, check_choice, warn_conflicts

    check_choice(on_conflict, ON_CONFLICT, "--on-conflict")
    lines = plain_progress()
    with ws.lock("wdsp edit"):
        ws.refuse_while_reverting("wdsp edit")
        from ..jobs.prompt_fit import check_requests_fit
        from ..optimisation.targets import OptimisationSettings

        requests = load_requests(facts, format, limit=limit, offset=offset)
        OptimisationSettings.from_config(config, requests_per_pass)
        check_requests_fit(ws, requests, config)  # a prompt longer than the model's context: before any model work
        # requests that meet earlier facts (docs/conflicts.md): torch-free, before any model work
        from ..jobs.conflicts import edit_conflicts, refuse_conflicts

        conflicts = edit_conflicts(ws, requests, config, batch_size, resume)
        warn_conflicts(conflicts, facts, batch_size, ws.root)
        if on_conflict == "refuse":
            refuse_conflicts(conflicts, str(facts), ws)
        if lines:
            progress_line(f"edit: {len(requests)} request(s) from {facts}, batches of {batch_size}; "
                          "loading the statistics and the model")
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=stderr, transient=True, disable=lines) as bar:
            batches = bar.add_task("iterations", total=None)
            step_task = bar.add_task("optimisation steps", total=config.v_num_grad_steps, visible=False)
            current = {"iteration": 0, "steps": config.v_num_grad_steps}

            def progress(event: str, data: dict) -> None:
                if event == "iteration":
                    bar.update(batches, total=data["batches"], completed=data["batch"] - 1,
                               description=f"iteration {data['iteration']} (batch {data['batch']}/{data['batches']}, "
                                           f"{data['requests']} requests)")
                    bar.reset(step_task, total=data["steps"], visible=True)
                    current.update(iteration=data["iteration"], steps=data["steps"])
                    if lines:
                        progress_line(f"iteration {data['iteration']} (batch {data['batch']}/{data['batches']}, "
                                      f"{data['requests']} requests): optimising targets, {data['steps']} steps")
                elif event == "step":
                    bar.update(step_task, completed=data["step"],
                               description=f"optimisation steps ({data['active']} active)")
                    every = max(1, -(-current["steps"] // 10))  # about every 10%
                    if lines and (data["step"] % every == 0 or data["step"] == current["steps"]):
                        progress_line(f"iteration {current['iteration']}: step {data['step']}/{current['steps']} "
                                      f"({data['active']} active)")
                elif event == "gate":
                    bar.update(step_task, visible=False)
                    if lines:
                        progress_line(f"iteration {data['iteration']}: measuring it for the gate")
                elif event == "committed":
                    bar.advance(batches)
                    stderr.print(f"committed iteration {data['iteration']}: {data['requests']} requests, "
                                 f"{data['seconds']:.1f} s, diff {fmt_bytes(data['diff_bytes'])}")

            report = run_edit(ws, requests, config, batch_size, resume, progress, source=str(facts),
                              requests_per_pass=requests_per_pass, gate=chosen)
    report["config"] = config.to_dict()
    report["conflicts"] = conflicts.to_dict()
    if json:
        emit_json(report)
        return
    render(report)


def render(report: dict) -> None:
    from rich.table import Table

    if report["fast_forwarded"]:
        stdout.print(f"HEAD moved forward over iterations {report['fast_forwarded']} this job had already committed.")
    if report["archived"]:
        stdout.print(f"Iterations {report['archived']} (after the rollback point) were moved to {report['archive']}.")
    if not report["iterations"]:
        stdout.print(f"Nothing to do: all {report['batches']} batch(es) of this job are committed "
                     f"(HEAD = {report['head']}). Use --no-resume to edit them again.")
        return
    if report["skipped"]:
        stdout.print(f"Resumed: {report['skipped']} batch(es) were already committed.")
    table = Table(title=f"Edited with {report['config']['method']}"
                  + (" +WD" if report["config"]["wd"] else "") + (" +SP" if report["config"]["sp"] else ""))
    for column in ("iter", "reqs", "s", "|delta|", "NLL", "SP", "diff", "dense"):
        table.add_column(column, justify="right", no_wrap=True)
    for it in report["iterations"]:
        table.add_row(str(it["iteration"]), str(it["requests"]), f"{it['seconds']:.1f}", f"{it['mean_delta_norm']:.3g}",
                      f"{it['mean_final_nll']:.3f}", "-" if it["sp_density"] is None else f"{it['sp_density']:.2f}",
                      fmt_bytes(it["diff_bytes"]), fmt_bytes(it["dense_bytes"]))
    stdout.print(table)
    stdout.print("|delta|: mean norm of the optimised residuals; NLL: mean target NLL after optimisation; "
                 "SP: realised density; diff: the iteration's file; dense: the same update as full matrices.")
    passed = [it["iteration"] for it in report["iterations"] if it.get("gate") == "passed"]
    if passed:
        stdout.print(f"Gate: passed by iteration(s) {', '.join(map(str, passed))}; their figures are stored as "
                     "their evaluations (wdsp report).")
    stdout.print(f"HEAD = {report['head']}. Next: wdsp evaluate")
