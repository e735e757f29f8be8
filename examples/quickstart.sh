#!/usr/bin/env bash
# The main job, offline, on the default model (SmolLM2-135M-Instruct):
#   bash scripts/setup.sh && bash examples/quickstart.sh
# 1. a workspace in runs/quickstart (or $WS), 2. covariance statistics from 20k tokens of text
# the model wrote itself, shipped with the package (offline; CORPUS=model-samples writes it anew,
# CORPUS=wiki.txt uses real text),
# 3. one MEMIT edit of examples/facts.jsonl, 4. its evaluation, 5. a side-by-side look.
# Rerunning it reuses the statistics and the committed edit, and only evaluates again.
set -euo pipefail
cd "$(dirname "$0")/.."
WS="${WS:-runs/quickstart}"
CORPUS="${CORPUS:-builtin}"
wdsp() { .venv/bin/wdsp "$@"; }

[ -f "$WS/workspace.json" ] || wdsp init -w "$WS"
wdsp covariance -w "$WS" --corpus "$CORPUS" --tokens 20000
wdsp edit examples/facts.jsonl -w "$WS" --method memit
wdsp evaluate -w "$WS"
wdsp probe "The capital of France is" -w "$WS" --base --max-new-tokens 8
