#!/usr/bin/env bash
# Copy the long-horizon grids' figures, as far as they have got, into docs/long-horizon/<grid>/
# (bench.md, bench.json, plots/*.png), safe while the runs go on (wdsp bench --tables-only).
#   bash benchmarks/publish_long_horizon.sh            # every runs/<grid> that has a spec.json
set -euo pipefail
cd "$(dirname "$0")/.."
for spec in runs/cf-b50/spec.json runs/zsre-b50/spec.json "$@"; do
  [ -f "$spec" ] || continue
  grid="$(dirname "$spec")"; name="$(basename "$grid")"; docs="docs/long-horizon/$name"
  (cd runs && OMP_NUM_THREADS=1 ../.venv/bin/python -m wdsp_cli bench --out "$name" --tables-only > /dev/null)
  mkdir -p "$docs/plots"
  cp "$grid/bench.md" "$grid/bench.json" "$docs/"
  cp "$grid"/plots/*.png "$docs/plots/" 2>/dev/null || true   # none before the first evaluation
  echo "$docs: $(grep -o '[a-z0-9+-]*-seed0: [0-9]* of [0-9]* iterations' "$docs/bench.md" | paste -sd ';' -)"
done
