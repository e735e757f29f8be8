"""Where a long ``wdsp bench`` stands before it finishes: every evaluated iteration of every run in
an OUT folder, read from the runs' workspaces (bench.json is written only when a run ends).

    .venv/bin/python benchmarks/bench_progress.py runs/long-counterfact [--markdown]

Prints per run and iteration the batch's efficacy, generalisation, locality, locality against the
base model and Score (latest batch, the paper's protocol), the edit's seconds and the engine
version of the iteration's record.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

COLUMNS = ("efficacy", "generalization", "locality", "locality_base", "score")


def progress(out: Path) -> dict:
    runs = {}
    for run in sorted((out / "runs").iterdir()):
        rows = []
        for path in sorted((run / "evaluations").glob("*.json")):
            t = int(path.stem)
            latest = json.loads(path.read_text())["latest"]
            record = json.loads((run / "iterations" / f"{t:06d}" / "record.json").read_text())
            rows.append({"iteration": t, **{k: latest.get(k) for k in COLUMNS},
                         "seconds": record["summary"]["seconds"], "wdsp_version": record.get("wdsp_version")})
        runs[run.name] = rows
    return runs


def markdown(runs: dict) -> str:
    lines = []
    for name, rows in runs.items():
        lines += [f"### {name} ({len(rows)} iterations evaluated)", "",
                  "| t | Eff | Gen | Loc | Loc vs base | Score | edit s | engine |", "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            cells = [f"{r[k]:.1f}" if isinstance(r[k], (int, float)) else "-" for k in COLUMNS]
            lines.append(f"| {r['iteration']} | " + " | ".join(cells) + f" | {r['seconds']:.0f} | {r['wdsp_version']} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    runs = progress(args.out)
    print(markdown(runs) if args.markdown else json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
