"""Side by side: the runs of several `wdsp bench` grids of one protocol, in one table and one figure
(issue 17: the stabilisers' grids next to the long-horizon grid they are compared with).

    .venv/bin/python benchmarks/compare_grids.py runs/cf-b50 runs/cf-b50-stabilisers runs/cf-b50-budget \\
        -o docs/long-horizon/cf-b50-compared

Each argument is a grid folder (its bench.json, as `wdsp bench` or `--tables-only` left it). The grids
must share the protocol: requests, offset, B, T, model, statistics corpus and tokens, retention and
collapse settings; only methods, variants and seeds may differ, and no run name may repeat. Writes
<out>/bench.md (the tables of `wdsp bench`, with a line naming each run's grid and engine) and
<out>/plots/*.png. Reads JSON only; no model is loaded.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wdsp_cli.bench.tables import markdown_tables, plot_results  # noqa: E402

#: what may differ between grids compared side by side
PER_GRID = ("methods", "variants", "seeds")


def merge(grids: dict[str, dict]) -> dict:
    """One results document from ``{grid name: bench.json}``; ValueError naming what differs."""
    (first_name, first), *rest = grids.items()
    protocol = {k: v for k, v in first["spec"].items() if k not in PER_GRID}
    merged = {"model": first["model"], "spec": dict(first["spec"]), "runs": {}, "grids": {}}
    for name, doc in grids.items():
        other = {k: v for k, v in doc["spec"].items() if k not in PER_GRID}
        differs = sorted(k for k in protocol.keys() | other.keys() if protocol.get(k) != other.get(k))
        if differs:
            raise ValueError(f"{name} is not the protocol of {first_name}: {', '.join(differs)} differ")
        for run, body in doc["runs"].items():
            if run in merged["runs"]:
                raise ValueError(f"run {run} is in two grids ({merged['grids'][run]} and {name})")
            merged["runs"][run] = body
            merged["grids"][run] = name
        for key in PER_GRID:
            merged["spec"][key] = list(dict.fromkeys([*merged["spec"][key], *doc["spec"][key]]))
    return merged


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("grids", nargs="+", type=Path)
    ap.add_argument("-o", "--out", type=Path, required=True)
    args = ap.parse_args()
    try:
        merged = merge({g.name: json.loads((g / "bench.json").read_text()) for g in args.grids})
    except (OSError, ValueError) as exc:
        sys.exit(f"compare_grids: {exc}")
    engines = {run: sorted({r["engine"] for r in body["iterations"]}) for run, body in merged["runs"].items()}
    origin = "; ".join(f"{run} from {merged['grids'][run]} (engine {', '.join(engines[run])})"
                       for run in merged["runs"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.md").write_text(f"Runs compared: {origin}.\n\n" + markdown_tables(merged))
    for path in plot_results(merged, args.out / "plots"):
        print(path)
    print(args.out / "bench.md")


if __name__ == "__main__":
    main()
