#!/usr/bin/env bash
# The batched, iterative benchmark on the default model for issues 5 and 8: CounterFact and zsRE,
# B = 10 requests x T = 10 iterations, MEMIT / PMET / AlphaEdit x {none, WD+SP}, each batch
# evaluated right after its edit, retention over all edited requests at iterations 5 and 10.
# The variants default to the paper's comparison (plain against WD+SP): the full 4-variant grid
# (VARIANTS=none,wd,sp,wd+sp) does not fit the hour per dataset a 2-core CPU gives; WD and SP alone
# are in docs/ablation (issue 3). Rerunning with more variants or methods resumes and adds runs.
#   [METHODS=memit,pmet,alphaedit] [VARIANTS=none,wd+sp] bash benchmarks/paper_grid.sh [counterfact|zsre ...]
# Workspaces go to runs/bench-<dataset> (resumable: rerun to continue); the tables, figures and
# plots are copied to docs/bench/<dataset>/.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=../shared/data
declare -A FILES=([counterfact]="$DATA/counterfact/counterfact_rome.jsonl" [zsre]="$DATA/zsre/zsre_mend.jsonl")
for dataset in "${@:-counterfact zsre}"; do
  for name in $dataset; do
    .venv/bin/wdsp bench "${FILES[$name]}" --out "runs/bench-$name" -b 10 -T 10 \
      --methods "${METHODS:-memit,pmet,alphaedit}" --variants "${VARIANTS:-none,wd+sp}" --retention-at 5 \
      --corpus "$DATA/text/wikitext2_raw_test.txt" --tokens 50000
    mkdir -p "docs/bench/$name"
    cp "runs/bench-$name/bench.json" "runs/bench-$name/bench.md" "docs/bench/$name/"
    cp runs/bench-"$name"/plots/*.png "docs/bench/$name/"
  done
done
