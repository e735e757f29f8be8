"""A few-minute check of the editing path on an accelerator: load, statistics, one MEMIT and one
PMET batch, evaluation, timings. Prints one JSON document.

    python benchmarks/gpu_check.py                       # SmolLM2-shaped random model, tiny tokenizer
    python benchmarks/gpu_check.py --model /path/to/hf-folder --device cuda:0

Without --model it needs no download: a Llama with SmolLM2's shapes (30 layers, hidden 576) and
random weights, with the byte-level test tokenizer, so only device placement and speed are
checked, not edit quality.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from wdsp_cli.config import preset  # noqa: E402
from wdsp_cli.data.requests import EditRequest  # noqa: E402
from wdsp_cli.editing.batch import edit_batch, edited_modules  # noqa: E402
from wdsp_cli.evaluation.scoring import score_targets  # noqa: E402
from wdsp_cli.model.weights import WeightState  # noqa: E402
from wdsp_cli.optimisation.prompts import generate_context_templates  # noqa: E402
from wdsp_cli.statistics.covariance import compute_covariance  # noqa: E402

FACTS = [("The capital of {} is", "France", "Berlin"), ("{} plays for", "Lionel Messi", "Japan"),
         ("The mother tongue of {} is", "Danielle Darrieux", "English"), ("{} is located in", "The Louvre", "Rome"),
         ("{} was founded by", "Apple", "Bill Gates")]


def shuffled_texts(n: int = 3000, words: int = 40) -> list[str]:
    """Texts of the test corpus's words in random order: varied contexts, so E[k k^T] has full rank."""
    import random

    from tiny_models import CORPUS

    vocab = " ".join(CORPUS).split()
    rng = random.Random(0)
    return [" ".join(rng.choices(vocab, k=words)) for _ in range(n)]


def random_smollm2_shaped(device):
    from tiny_models import tiny_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=512, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True,
                         max_position_embeddings=512, pad_token_id=0, eos_token_id=0, bos_token_id=0)
    model = LlamaForCausalLM(config).to(device).eval().requires_grad_(False)
    return model, tiny_tokenizer(), shuffled_texts()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--requests", type=int, default=20)
    args = ap.parse_args()
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    out: dict = {"device": str(device), "torch": torch.__version__,
                 "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None}
    clock = time.perf_counter()
    if args.model:
        from wdsp_cli.model.loading import load_model

        model, tok = load_model(args.model, device=device)
        texts = shuffled_texts()
    else:
        model, tok, texts = random_smollm2_shaped(device)
    sync()
    out["load_s"] = round(time.perf_counter() - clock, 2)
    requests = [EditRequest(prompt=p, subject=s, target_new=t) for p, s, t in FACTS] * (args.requests // len(FACTS))
    layers = sorted(set(preset("memit-smollm2").layers) | set(preset("pmet-smollm2").layers))
    clock = time.perf_counter()
    stats = compute_covariance(model, tok, layers, texts, max_tokens=20_000)
    sync()
    out["covariance_s"] = round(time.perf_counter() - clock, 2)
    out["covariance_tokens"] = stats[layers[0]].token_count
    moments = {l: s.second_moment.to(device) for l, s in stats.items()}
    templates = generate_context_templates(model, tok, 5, 10, seed=0)
    prompts, targets = [r.rewrite_prompt for r in requests], [r.target_new for r in requests]
    for name in ("memit-smollm2", "pmet-smollm2"):
        config = preset(name)
        state = WeightState(model)
        snapshot = state.snapshot(edited_modules(model, config))
        before, _ = score_targets(model, tok, prompts, targets)
        clock = time.perf_counter()
        edit = edit_batch(model, tok, requests, config, moments, templates, state)
        sync()
        seconds = time.perf_counter() - clock
        after, _ = score_targets(model, tok, prompts, targets)
        state.restore(snapshot)
        out[name] = {"edit_s": round(seconds, 2), "timings_s": {k: round(v, 3) for k, v in edit.report["timings_s"].items()},
                     "target_nll_before": round(float(before.mean()), 3), "target_nll_after": round(float(after.mean()), 3),
                     "diff_bytes": edit.diff.nbytes, "finite": edit.diff.is_finite()}
    if device.type == "cuda":
        out["peak_gpu_bytes"] = torch.cuda.max_memory_allocated(device)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
