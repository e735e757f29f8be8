#!/usr/bin/env bash
# Copy the long-horizon grids' figures, as far as they have got, into docs/long-horizon/<grid>/
# (bench.md, bench.json, plots/*.png), safe while the runs go on (wdsp bench --tables-only).
#   bash benchmarks/publish_long_horizon.sh [more/spec.json ...]   # cf-b50, zsre-b50 and cf-b50-* grids
#   (and runs/cf-b50 with its further grids runs/cf-b50-*, side by side in docs/long-horizon/cf-b50-compared)
set -euo pipefail
cd "$(dirname "$0")/.."
for spec in runs/cf-b50/spec.json runs/zsre-b50/spec.json runs/cf-b50-*/spec.json "$@"; do
  [ -f "$spec" ] || continue
  grid="$(dirname "$spec")"; name="$(basename "$grid")"; docs="docs/long-horizon/$name"
  (cd runs && OMP_NUM_THREADS=1 ../.venv/bin/python -m wdsp_cli bench --out "$name" --tables-only > /dev/null)
  mkdir -p "$docs/plots"
  cp "$grid/bench.md" "$grid/bench.json" "$docs/"
  cp "$grid"/plots/*.png "$docs/plots/" 2>/dev/null || true   # none before the first evaluation
  echo "$docs: $(grep -o '[a-z0-9+-]*-seed0: [0-9]* of [0-9]* iterations' "$docs/bench.md" | paste -sd ';' -)"
done
# CounterFact's further grids (issue 17's stabilisers) side by side with the main one, in one table and figure
further=(); for g in runs/cf-b50-*/; do [ -f "$g/bench.json" ] && further+=("${g%/}"); done
if [ -f runs/cf-b50/bench.json ] && [ ${#further[@]} -gt 0 ]; then
  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/compare_grids.py runs/cf-b50 "${further[@]}" \
    -o docs/long-horizon/cf-b50-compared > /dev/null
  echo "docs/long-horizon/cf-b50-compared: runs/cf-b50 ${further[*]}"
fi
