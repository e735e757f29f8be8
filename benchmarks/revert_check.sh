#!/usr/bin/env bash
# Issue 18's check on the real model: revert iteration 3 of 10 (B = 20, CounterFact EasyEdit part 2,
# MEMIT on SmolLM2-135M-Instruct) and compare with a workspace that never had it (the same first
# two iterations, then batches 4-10): diffs (sha256 of each tensor) and retention over the kept 180.
#   OMP_NUM_THREADS=1 bash benchmarks/revert_check.sh > runs/revert-check.log 2>&1
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/revert-check}"
DATA=../shared/data/counterfact/counterfact_easyedit.part2.jsonl
wdsp() { .venv/bin/wdsp "$@"; }
mkdir -p "$OUT"
[ -f "$OUT/a/workspace.json" ] || wdsp init -w "$OUT/a"
wdsp covariance -w "$OUT/a" --corpus builtin
start=$(date +%s)
wdsp edit "$DATA" -w "$OUT/a" -b 20 --limit 200                      # iterations 1-10
echo "edit of 10 batches: $(( $(date +%s) - start )) s"
if [ ! -f "$OUT/never/workspace.json" ]; then
  cp -r "$OUT/a" "$OUT/never"
  wdsp rollback 2 -w "$OUT/never"
fi
start=$(date +%s)
wdsp edit "$DATA" -w "$OUT/never" -b 20 --offset 60 --limit 140     # batches 4-10 after 1-2
echo "never: edit of 7 batches: $(( $(date +%s) - start )) s"
wdsp revert 3 -w "$OUT/a" --dry-run
start=$(date +%s)
wdsp revert 3 -w "$OUT/a" --json > "$OUT/revert.json"
echo "revert 3: $(( $(date +%s) - start )) s"
wdsp evaluate -w "$OUT/a" --no-health --json > "$OUT/a-evaluation.json"
wdsp evaluate -w "$OUT/never" --no-health --json > "$OUT/never-evaluation.json"
.venv/bin/python - "$OUT" <<'PY'
import hashlib, json, sys
from pathlib import Path
from safetensors.torch import load_file
out = Path(sys.argv[1])
def digests(ws):
    head = int((ws / "HEAD").read_text())
    return [{k: hashlib.sha256(v.numpy().tobytes()).hexdigest() for k, v in
             load_file(str(ws / "iterations" / f"{t:06d}" / "diff.safetensors")).items()} for t in range(1, head + 1)]
a, never = digests(out / "a"), digests(out / "never")
same = [x == y for x, y in zip(a, never)]
ea, en = (json.loads((out / f"{n}-evaluation.json").read_text())["all"] for n in ("a", "never"))
from wdsp_cli.model.hardware import cpu_model
print(json.dumps({"cpu": cpu_model(), "iterations": [len(a), len(never)], "identical_diffs": same,
                  "retention_after_revert": ea, "retention_never": en,
                  "score_difference": ea["score"] - en["score"]}, indent=1))
PY
