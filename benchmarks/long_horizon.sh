#!/usr/bin/env bash
# Issue 16's long benchmark (docs/long-horizon/README.md), one grid per dataset, on a frozen checkout of
# the engine (a commit: ENGINE, else HEAD at the first start) so the work tree can change under it. Resumable: rerun the same line
# and it goes on where it stopped; a run that has collapsed (3 batches in a row) stops early.
#   nohup bash benchmarks/long_horizon.sh counterfact > runs/cf-b50.log 2>&1 &      # B = 50, T = 100
#   nohup bash benchmarks/long_horizon.sh zsre > runs/zsre-b50.log 2>&1 &           # B = 50, T = 36 (all 1,834)
# METHODS (default memit), VARIANTS (default none,wd+sp), JOBS (runs at once, default 2) and THREADS (each, default 1) may be set;
# GRID names a further grid of the same data beside it (runs/<dataset>-b50-<GRID>), e.g. issue 17's:
#   GRID=stabilisers VARIANTS=anchor,budget0.5,mpes,wd+sp+anchor nohup bash benchmarks/long_horizon.sh counterfact ...
#   GRID=alphaedit METHODS=alphaedit VARIANTS=none nohup bash benchmarks/long_horizon.sh counterfact ...
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:?counterfact or zsre}" in
  counterfact) requests=counterfact/counterfact_easyedit.part1.jsonl; out=cf-b50; T=100 ;;
  zsre) requests=zsre/zsre_mend.jsonl; out=zsre-b50; T=36 ;;
  *) echo "unknown dataset $1: counterfact or zsre" >&2; exit 2 ;;
esac
out="$out${GRID:+-$GRID}"
mkdir -p runs
# The engine is pinned per grid on its first start (runs/<out>.engine), so a resume never mixes code.
[ -f "runs/$out.engine" ] || echo "${ENGINE:-$(git rev-parse --short HEAD)}" > "runs/$out.engine"
ENGINE="$(cat "runs/$out.engine")"
[ -d "runs/engine-$ENGINE" ] || git worktree add --detach "runs/engine-$ENGINE" "$ENGINE"
export OMP_NUM_THREADS="${THREADS:-1}" MKL_NUM_THREADS="${THREADS:-1}" PYTHONPATH="$PWD/runs/engine-$ENGINE"
cd runs  # not the repository root, so the frozen engine is imported, not the work tree's
exec ../.venv/bin/python -m wdsp_cli bench "../../shared/data/$requests" -o "$out" -b 50 -T "$T" \
  --methods "${METHODS:-memit}" --variants "${VARIANTS:-none,wd+sp}" --jobs "${JOBS:-2}" \
  --retention-every 10 --retention-sample 500 \
  --corpus ../../shared/data/text/wikitext2_raw_test.txt --tokens 50000
