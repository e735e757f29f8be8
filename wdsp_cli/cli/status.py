"""``wdsp status``: the model, HEAD, statistics and the history of iterations."""

from __future__ import annotations

from pathlib import Path

from .common import (
    JsonOption,
    WorkspaceOption,
    emit_json,
    fmt_bytes,
    fmt_pct,
    handles_errors,
    stderr,
    stdout,
)


@handles_errors
def status(workspace: Path = WorkspaceOption, json: bool = JsonOption) -> None:
    """Show the workspace: its model, HEAD, statistics and every iteration (reads files only).

    Warns (on stderr; `problems` with --json) about damage that names and sizes show: HEAD past
    the last iteration, missing, empty or truncated files. `wdsp check` reads every file."""
    from rich.table import Table

    from ..jobs.status import workspace_status
    from .common import open_workspace

    document = workspace_status(open_workspace(workspace))
    if json:
        emit_json(document)
        return
    model = document["model"]
    stdout.print(f"Workspace [bold]{document['workspace']}[/]: {model['source']['source']} ({model['model_type']}, "
                 f"{model['num_layers']} layers, {model['dtype']}, fingerprint {model['fingerprint'][7:19]})")
    stats = document["statistics"]
    groups: dict[tuple, list[int]] = {}
    for s in stats:
        groups.setdefault((s["tokens"], s["corpus"]), []).append(s["layer"])
    stdout.print("Statistics: " + ("; ".join(f"layers {layers} ({tokens} tokens of {corpus})"
                                             for (tokens, corpus), layers in groups.items())
                                   if stats else "none (run wdsp covariance)"))
    stdout.print(f"HEAD = {document['head']}")
    for problem in document["problems"]:
        stderr.print(f"[bold yellow]Warning:[/] {problem['file']}: {problem['problem']} (repair: {problem['repair']})",
                     soft_wrap=True)
    if document["iterations"]:
        table = Table()
        for column in ("iter", "created UTC", "method", "reqs", "diff", "dense", "Score", "ppl/b", ""):
            table.add_column(column, justify="right", no_wrap=True)
        for it in document["iterations"]:
            method = (it["method"] or "?") + ("+WD" if it["wd"] else "") + ("+SP" if it["sp"] else "")
            table.add_row(str(it["iteration"]), (it["created_at"] or "")[5:16].replace("T", " "), method, str(it["requests"]),
                          fmt_bytes(it["diff_bytes"]), fmt_bytes(it["dense_bytes"]), fmt_pct(it["score"]),
                          "-" if it["perplexity_ratio"] is None else f"{it['perplexity_ratio']:.2f}",
                          "undone" if it["after_head"] else ("HEAD" if it["iteration"] == document["head"] else ""))
        stdout.print(table)
    if document["archived_sets"]:
        stdout.print(f"Archived sets of iterations: {', '.join(document['archived_sets'])}")
    if document["rejected"]:
        stdout.print(f"Batches the gate refused (never committed), in rejected/: {', '.join(document['rejected'])}")
    if document["pending_revert"]:
        stderr.print(f"[bold yellow]Warning:[/] `{document['pending_revert']}` was interrupted; run it again to "
                     "finish it (edit and rollback refuse until then)", soft_wrap=True)
    if document["problems"]:
        stderr.print(f"[bold yellow]Warning:[/] the workspace looks damaged ({len(document['problems'])} problem(s)); "
                     "run `wdsp check` to read every file and list the repairs", soft_wrap=True)
