#!/usr/bin/env bash
# Copy the long-horizon grids' figures, as far as they have got, into docs/long-horizon/<grid>/
# (bench.md, bench.json, plots/*.png), safe while the runs go on (wdsp bench --tables-only).
#   bash benchmarks/publish_long_horizon.sh [more/spec.json ...]   # cf-b50, zsre-b50 and cf-b50-* grids
# A grid whose published copy has got further than its run (a run restarted after its folder was lost)
# keeps the published copy, with a message; FORCE=1 replaces it anyway. Then the published CounterFact
# grids side by side (cf-b50 and every cf-b50-*) in docs/long-horizon/cf-b50-compared.
set -euo pipefail
cd "$(dirname "$0")/.."
# "run: iterations" of each run in a bench.json, one per line
iterations() { .venv/bin/python -c 'import json, sys
for name, run in json.load(open(sys.argv[1]))["runs"].items(): print("%s: %d" % (name, len(run["iterations"])))' "$1"; }
further_than() {  # 0 when some run in bench.json $1 has more iterations than the same run in $2 (or $2 lacks it)
  .venv/bin/python -c 'import json, sys
old, new = (json.load(open(p))["runs"] for p in sys.argv[1:])
sys.exit(0 if any(len(r["iterations"]) > len(new.get(n, {}).get("iterations", [])) for n, r in old.items()) else 1)' "$1" "$2"; }
for spec in runs/cf-b50/spec.json runs/zsre-b50/spec.json runs/cf-b50-*/spec.json "$@"; do
  [ -f "$spec" ] || continue
  grid="$(dirname "$spec")"; name="$(basename "$grid")"; docs="docs/long-horizon/$name"
  (cd runs && OMP_NUM_THREADS=1 ../.venv/bin/python -m wdsp_cli bench --out "$name" --tables-only > /dev/null)
  if [ -f "$docs/bench.json" ] && [ -z "${FORCE:-}" ] && further_than "$docs/bench.json" "$grid/bench.json"; then
    echo "$docs: kept, it has got further ($(iterations "$docs/bench.json" | paste -sd ';' -)) than $grid" \
         "($(iterations "$grid/bench.json" | paste -sd ';' -)); FORCE=1 replaces it" >&2
    continue
  fi
  mkdir -p "$docs/plots"
  cp "$grid/bench.md" "$grid/bench.json" "$docs/"
  cp "$grid"/plots/*.png "$docs/plots/" 2>/dev/null || true   # none before the first evaluation
  echo "$docs: $(iterations "$docs/bench.json" | paste -sd ';' -)"
done
# CounterFact's further grids (issue 17's stabilisers) side by side with the main one, from the published copies
further=(); for g in docs/long-horizon/cf-b50-*/; do
  [ "$g" != docs/long-horizon/cf-b50-compared/ ] && [ -f "$g/bench.json" ] && further+=("${g%/}"); done
if [ -f docs/long-horizon/cf-b50/bench.json ] && [ ${#further[@]} -gt 0 ]; then
  OMP_NUM_THREADS=1 .venv/bin/python benchmarks/compare_grids.py docs/long-horizon/cf-b50 "${further[@]}" \
    -o docs/long-horizon/cf-b50-compared > /dev/null
  echo "docs/long-horizon/cf-b50-compared: docs/long-horizon/cf-b50 ${further[*]}"
fi
