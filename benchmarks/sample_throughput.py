"""How fast the default model writes the text of the offline statistics fallback, by batch size.

    .venv/bin/python benchmarks/sample_throughput.py [--texts 64] [--batches 16,64,128] [--max-new-tokens 64]

The main job (examples/quickstart.sh) computes its statistics from 20k tokens the model writes
(``data.corpus.model_samples_corpus``, 16 texts per ``generate`` call): 523 s on an AVX2-only
machine, most of the main job. This times ``sample_texts_from_model`` for the same texts at each
batch size, one after the other in one process, and prints one JSON line with tokens/s per batch
size and the CPU. Sampling at another batch size gives other texts (the seed is per batch), so
adopting one also needs the edit-quality check of benchmarks/fallback_statistics.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_description  # noqa: E402

from wdsp_cli.data.corpus import sample_texts_from_model  # noqa: E402
from wdsp_cli.model.loading import load_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", type=int, default=64)
    ap.add_argument("--batches", default="16,64,128")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    args = ap.parse_args()
    model, tok = load_model("smollm2-135m-instruct")
    report = {"texts": args.texts, "max_new_tokens": args.max_new_tokens, "threads": torch.get_num_threads(),
              "machine": cpu_description(), "batch_sizes": {}}
    for size in (int(b) for b in args.batches.split(",")):
        clock = time.perf_counter()
        texts = sample_texts_from_model(model, tok, args.texts, max_new_tokens=args.max_new_tokens, batch_size=size)
        seconds = time.perf_counter() - clock
        tokens = sum(len(tok(t, add_special_tokens=False).input_ids) for t in texts)
        report["batch_sizes"][size] = {"seconds": round(seconds, 2), "tokens": tokens,
                                       "tokens_per_s": round(tokens / seconds, 1)}
        print(json.dumps({size: report["batch_sizes"][size]}), file=sys.stderr, flush=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
