#!/usr/bin/env bash
# A weekly maintenance cycle, run from a script (cron, CI): edit this week's facts with PMET + WD
# + SP, evaluate every fact edited so far, and roll back if the edit pulled the overall Score
# below a threshold. No prompts; decisions read the --json documents.
#   bash examples/weekly_cycle.sh examples/facts.jsonl        # week 1
#   bash examples/weekly_cycle.sh examples/facts-week2.jsonl  # week 2
# WS (default runs/weekly) is the workspace, MIN_SCORE (default 70) the threshold.
set -euo pipefail
cd "$(dirname "$0")/.."
FACTS="${1:?usage: bash examples/weekly_cycle.sh FACTS.jsonl}"
WS="${WS:-runs/weekly}"
MIN_SCORE="${MIN_SCORE:-70}"
wdsp() { .venv/bin/wdsp "$@"; }
field() { .venv/bin/python -c "import json, sys; d = json.load(sys.stdin); print(eval(sys.argv[1], {}, {'d': d}))" "$1"; }

[ -f "$WS/workspace.json" ] || wdsp init -w "$WS"
wdsp covariance -w "$WS" --tokens 20000            # computed the first week, reused afterwards
before=$(wdsp status -w "$WS" --json | field 'd["head"]')
wdsp edit "$FACTS" -w "$WS" --method pmet --wd --sp
score=$(wdsp evaluate -w "$WS" --json | field 'd["all"]["score"] or 0')
if .venv/bin/python -c "import sys; sys.exit(float(sys.argv[1]) < float(sys.argv[2]))" "$score" "$MIN_SCORE"; then
  echo "kept iteration $(wdsp status -w "$WS" --json | field 'd["head"]'): Score over all edited facts $score"
else
  wdsp rollback "$before" -w "$WS" --json
  echo "rolled back to iteration $before: Score over all edited facts $score < $MIN_SCORE" >&2
  exit 1
fi
