#!/usr/bin/env bash
# Issue 16's first long run (docs/long-horizon/README.md): CounterFact (EasyEdit part 1), B = 50 to
# T = 100, MEMIT plain, one thread, on a frozen checkout of the engine (ENGINE, a commit) so the work
# tree can change under it. Resumable: rerun it, and it goes on where it stopped.
#   nohup bash benchmarks/long_counterfact.sh > runs/long-counterfact.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
ENGINE="${ENGINE:-7cb8af0}"
[ -d "runs/engine-$ENGINE" ] || git worktree add --detach "runs/engine-$ENGINE" "$ENGINE"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONPATH="$PWD/runs/engine-$ENGINE"
cd runs  # not the repository root, so the frozen engine is imported, not the work tree's
exec ../.venv/bin/python -m wdsp_cli bench ../../shared/data/counterfact/counterfact_easyedit.part1.jsonl \
  -o long-counterfact -b 50 -T 100 --methods memit --variants none --retention-at 10,25,50,75 \
  --corpus ../../shared/data/text/wikitext2_raw_test.txt --tokens 50000
