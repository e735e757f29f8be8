"""WD+SP against the plain method, per editor, from `wdsp bench` results (issues 5 and 8).

    python benchmarks/bench_compare.py docs/bench/counterfact/bench.json docs/bench/zsre/bench.json

For each bench.json and each method run both plain and with WD+SP (seed-averaged), prints a
markdown table: the Score of each batch right after its edit averaged over the first and the
second half of the iterations, the difference WD+SP - plain in each half (the paper's claim is
that it is positive and grows in later iterations), and the retention Score (every request
edited so far) at the last iteration. Reads JSON only; no model is loaded.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wdsp_cli.bench.tables import seed_averaged  # noqa: E402


def halves(rows: list[dict]) -> tuple[float, float]:
    scores = [r["latest"]["score"] for r in rows]
    cut = len(scores) // 2
    return sum(scores[:cut]) / cut, sum(scores[cut:]) / (len(scores) - cut)


def compare(results: dict) -> list[str]:
    averaged = seed_averaged(results)
    spec = results["spec"]
    cut = spec["iterations"] // 2
    lines = [f"{Path(spec['requests']).name}: B = {spec['batch_size']}, T = {spec['iterations']}, "
             f"seeds {spec['seeds']}", "",
             f"| Method | Score @1-{cut} | @{cut + 1}-{spec['iterations']} | WD+SP - plain @1-{cut} | "
             f"@{cut + 1}-{spec['iterations']} | iterations WD+SP ahead | retention @{spec['iterations']} |",
             "|---|---|---|---|---|---|---|"]
    for method in spec["methods"]:
        plain, both = averaged.get(method.upper()), averaged.get(method.upper() + "+WD+SP")
        if plain is None or both is None:
            continue
        (p1, p2), (b1, b2) = halves(plain), halves(both)
        ahead = sum(b["latest"]["score"] > p["latest"]["score"] for p, b in zip(plain, both))
        keep = [rows[-1].get("all", {}).get("score", float("nan")) for rows in (plain, both)]
        lines.append(f"| {method.upper()} | {p1:.2f} | {p2:.2f} | | | | {keep[0]:.1f} |")
        lines.append(f"| {method.upper()}+WD+SP | {b1:.2f} | {b2:.2f} | {b1 - p1:+.2f} | {b2 - p2:+.2f} | "
                     f"{ahead} of {len(plain)} | {keep[1]:.1f} |")
    return lines


def main(paths: list[str]) -> None:
    for path in paths:
        print("\n".join(compare(json.loads(Path(path).read_text()))) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:] or ["docs/bench/counterfact/bench.json", "docs/bench/zsre/bench.json"])
