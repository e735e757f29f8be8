"""The golden edits: fixed MEMIT, PMET and AlphaEdit edits (with WD and SP) on the tiny models,
made through the command line (init, covariance, edit), whose diff tensors are pinned in
``tests/golden/edits.safetensors``.

``make_golden_edits(tmp)`` -> {"<case>/<iteration>/<tensor name>": tensor}; the test compares
them with the stored file, and ``python tests/golden_edits.py`` rewrites it (only when a change of
results is intended: say why in the commit). The file records the CPU it was made on, since
float kernels may round differently on another processor.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden" / "edits.safetensors"
# case -> (model, edit options); 6 facts in batches of 3: two iterations, so state carried between
# iterations (AlphaEdit's accumulated keys, SP's per-iteration seed) is pinned too.
CASES = {
    "llama-memit-wd-sp": ("llama", ["--method", "memit", "--wd", "--sp"]),
    "llama-memit-sinkhorn-sp": ("llama", ["--method", "memit", "--wd", "--wd-mode", "sinkhorn", "--sp"]),
    "llama-pmet-wd-sp": ("llama", ["--method", "pmet", "--wd", "--wd-points", "all", "--sp"]),
    "llama-alphaedit-wd-sp": ("llama", ["--method", "alphaedit", "--wd", "--sp"]),
    "gpt2-memit-wd-sp": ("gpt2", ["--method", "memit", "--wd", "--sp"]),
    "gpt2-pmet-wd-sp": ("gpt2", ["--method", "pmet", "--wd", "--sp"]),
    "gpt2-alphaedit-plain": ("gpt2", ["--method", "alphaedit"]),
}


def cpu_signature() -> str:
    """The CPU model and its vector flags (what decides float rounding in torch's kernels)."""
    from wdsp_cli.model.hardware import cpu_flags, cpu_model

    return f"{cpu_model()} [{' '.join(sorted(cpu_flags()))}]"


def _model_dir(kind: str, path: Path) -> Path:
    from tiny_models import tiny_gpt2, tiny_llama, tiny_tokenizer

    if not path.exists():
        (tiny_llama if kind == "llama" else tiny_gpt2)(0).save_pretrained(path)
        tiny_tokenizer().save_pretrained(path)
    return path


def make_golden_edits(tmp: Path) -> dict:
    import torch
    from safetensors.torch import load_file
    from workspace_helpers import wdsp, write_corpus, write_facts

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        corpus = write_corpus(tmp / "corpus.txt")
        facts = write_facts(tmp / "facts.jsonl")
        tensors = {}
        for case, (kind, options) in CASES.items():
            ws = tmp / case
            wdsp("init", "--model", _model_dir(kind, tmp / f"tiny-{kind}"), "-w", ws)
            wdsp("covariance", "-w", ws, "--corpus", corpus, "--tokens", 2000)
            wdsp("edit", facts, "-w", ws, "--batch-size", 3, "--steps", 5, "--seed", 3, *options)
            for t in (1, 2):
                for name, tensor in load_file(str(ws / "iterations" / f"{t:06d}" / "diff.safetensors")).items():
                    tensors[f"{case}/{t}/{name}"] = tensor
        return tensors
    finally:
        torch.set_num_threads(before)


if __name__ == "__main__":
    import tempfile

    sys.path.insert(0, str(HERE))
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory() as tmp:
        tensors = make_golden_edits(Path(tmp))
    GOLDEN.parent.mkdir(exist_ok=True)
    save_file({k: v.contiguous() for k, v in sorted(tensors.items())}, str(GOLDEN), metadata={"cpu": cpu_signature()})
    print(f"wrote {len(tensors)} tensors to {GOLDEN} ({cpu_signature()})")
