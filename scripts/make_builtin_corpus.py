"""Write wdsp_cli/data/texts/smollm2-samples.jsonl: the text of the offline statistics fallback, once.

    .venv/bin/python scripts/make_builtin_corpus.py [--texts 800]

The fallback (``--corpus model-samples``) has the base model write its statistics' text at every
``wdsp covariance``: 20k tokens took 523 s on an AVX2-only CPU. This writes the same texts (the
fallback's prompts, seed 0, top-k 50, 64 new tokens, batches of 16: ``data.corpus.
sample_texts_from_model``) of the default model, SmolLM2-135M-Instruct (Apache-2.0), once, one
text per line (a text's own line breaks become spaces), so ``--corpus builtin`` reads them in a
second. One JSON object {"text": ...} per line, each text exactly as the fallback yields it, and the
first texts are those the fallback writes first: up to this file's size the statistics are the
fallback's (on a CPU whose kernels sample the same tokens).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wdsp_cli.data.corpus import sample_texts_from_model  # noqa: E402
from wdsp_cli.model.loading import load_model  # noqa: E402

TARGET = ROOT / "wdsp_cli" / "data" / "texts" / "smollm2-samples.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", type=int, default=800)
    args = ap.parse_args()
    model, tok = load_model("smollm2-135m-instruct")
    clock = time.perf_counter()
    texts = sample_texts_from_model(model, tok, args.texts)
    TARGET.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts if t),
                      encoding="utf-8")
    tokens = sum(len(tok(t, add_special_tokens=False).input_ids) for t in texts)
    print(f"wrote {len(texts)} texts, {tokens} tokens, to {TARGET} in {time.perf_counter() - clock:.0f} s")


if __name__ == "__main__":
    main()
