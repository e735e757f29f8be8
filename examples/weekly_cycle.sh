#!/usr/bin/env bash
# A weekly maintenance cycle, run from a script (cron, CI): edit this week's facts with PMET + WD
# + SP behind a gate. Each batch is measured before it is committed; one that does not take
# (efficacy under 80%), breaks the model (held-out perplexity over 1.5x the base's) or pulls the Score
# over the facts edited so far under MIN_SCORE (a fixed sample of 200) is set aside in $WS/rejected/
# and wdsp exits 8, with HEAD where it was. No prompts; the decision is the exit code.
#   bash examples/weekly_cycle.sh examples/facts.jsonl        # week 1
#   bash examples/weekly_cycle.sh examples/facts-week2.jsonl  # week 2
# WS (default runs/weekly) is the workspace, MIN_SCORE (default 70) the retention threshold.
set -euo pipefail
cd "$(dirname "$0")/.."
FACTS="${1:?usage: bash examples/weekly_cycle.sh FACTS.jsonl}"
WS="${WS:-runs/weekly}"
MIN_SCORE="${MIN_SCORE:-70}"
wdsp() { .venv/bin/wdsp "$@"; }

[ -f "$WS/workspace.json" ] || wdsp init -w "$WS"
wdsp covariance -w "$WS" --corpus builtin          # computed the first week, reused afterwards
status=0
wdsp edit "$FACTS" -w "$WS" --method pmet --wd --sp --gate --gate-retention "$MIN_SCORE" || status=$?
case "$status" in
  0) echo "kept: $(wdsp status -w "$WS" --json | .venv/bin/python -c 'import json, sys; print("HEAD", json.load(sys.stdin)["head"])')" ;;
  8) echo "refused by the gate: the batch is in $WS/rejected/ (see the error above); HEAD did not move" >&2
     exit 8 ;;
  *) exit "$status" ;;
esac
