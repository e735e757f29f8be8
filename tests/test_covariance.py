"""Second-moment statistics against a one-text-at-a-time float64 reference, and their storage."""

from __future__ import annotations

import json

import pytest
import torch

from wdsp_cli.data.corpus import open_corpus
from wdsp_cli.errors import InputError, StatisticsError
from wdsp_cli.model.architectures import template_for
from wdsp_cli.statistics.covariance import (
    LayerStatistics,
    SecondMomentSum,
    accumulate_second_moment_sums,
    compute_covariance,
    length_sorted_batches,
    load_layer_statistics,
    merge_layer_statistics,
    save_layer_statistics,
    second_moment_from_sum,
    token_rows,
)

TEXTS = [
    "The capital of France is Paris.",
    "Lionel Messi plays for Argentina. The Eiffel Tower is in Paris, and the Colosseum is located in Rome.",
    "Apple",
    "Toyota is headquartered in Japan. The Louvre is a museum in Paris, France. English, French, Spanish, "
    "Italian, German and Japanese are languages spoken by people. He is a musician.",
    "She is a scientist.",
    "Microsoft was founded by Bill Gates.",
    "They play the piano and the guitar in London. The mother tongue of Danielle Darrieux is French.",
]
LAYERS = [1, 2]


def reference_keys(model, tokenizer, layer, texts, seq_len=10_000):
    """Keys [N, d] in float64: each text (cut into seq_len pieces) alone, full forward, plain hook."""
    module = model.get_submodule(template_for(model).mlp_out_name(layer))
    seen = []
    handle = module.register_forward_pre_hook(lambda mod, args: seen.append(args[0][0].double()))
    try:
        with torch.no_grad():
            for text in texts:
                ids = tokenizer(text)["input_ids"]  # the tiny tokenizer adds no special tokens
                for start in range(0, len(ids), seq_len):
                    model(input_ids=torch.tensor([ids[start:start + seq_len]]))
    finally:
        handle.remove()
    return torch.cat(seen)


def mean_outer(keys):
    return keys.T @ keys / keys.shape[0]


def assert_close_to(stats: LayerStatistics, reference: torch.Tensor, rtol=1e-5):
    got = stats.second_moment.double()
    scale = reference.abs().max()
    assert torch.allclose(got, reference, rtol=rtol, atol=rtol * scale), float((got - reference).abs().max() / scale)


def test_matches_one_text_at_a_time_reference(tiny_model, tokenizer):
    stats = compute_covariance(tiny_model, tokenizer, LAYERS, TEXTS, batch_size=3, seq_len=128)
    assert sorted(stats) == LAYERS
    for layer in LAYERS:
        keys = reference_keys(tiny_model, tokenizer, layer, TEXTS)
        s = stats[layer]
        assert s.layer == layer and s.module == template_for(tiny_model).mlp_out_name(layer)
        assert s.token_count == keys.shape[0]
        assert s.dtype == "float32" and s.second_moment.dtype == torch.float32
        assert s.second_moment.shape == (keys.shape[1], keys.shape[1])
        assert_close_to(s, mean_outer(keys))
        assert torch.equal(s.second_moment, s.second_moment.T) or torch.allclose(s.second_moment, s.second_moment.T)


def test_padding_is_excluded(tiny_model, tokenizer):
    """One padded batch of very different lengths == each text alone, without padding."""
    lengths = [len(tokenizer(t)["input_ids"]) for t in TEXTS]
    assert max(lengths) > 10 * min(lengths)
    rows = list(token_rows(tokenizer, TEXTS, seq_len=256))
    [(ids, mask)] = list(length_sorted_batches(rows, len(TEXTS), pad_id=0, max_slots=len(TEXTS) * 256))
    assert ids.shape == (len(TEXTS), max(lengths)) and int(mask.sum()) == sum(lengths)  # one batch, 70% pads
    together = compute_covariance(tiny_model, tokenizer, [2], TEXTS, batch_size=len(TEXTS))
    assert together[2].token_count == sum(lengths)
    alone = reference_keys(tiny_model, tokenizer, 2, TEXTS)
    assert_close_to(together[2], mean_outer(alone))


def test_non_finite_keys_at_pads_are_ignored(tiny_model, tokenizer):
    """Pads are zeroed with masked_fill, so even a NaN key at a pad cannot leak into the sums."""
    seen = {}
    module = tiny_model.get_submodule(template_for(tiny_model).mlp_out_name(2))

    def grab_mask(_, args, kwargs):
        seen["mask"] = kwargs["attention_mask"]

    def poison_pads(_, args):
        keys = args[0].clone()
        keys[~seen["mask"].bool()] = float("nan")
        return (keys,)

    handles = [tiny_model.register_forward_pre_hook(grab_mask, with_kwargs=True),
               module.register_forward_pre_hook(poison_pads)]
    try:
        stats = compute_covariance(tiny_model, tokenizer, [2], TEXTS, batch_size=len(TEXTS))
    finally:
        for handle in handles:
            handle.remove()
    assert not bool(seen["mask"].all())  # there were pads
    assert_close_to(stats[2], mean_outer(reference_keys(tiny_model, tokenizer, 2, TEXTS)))


def test_long_documents_are_split_into_rows(tiny_model, tokenizer):
    stats = compute_covariance(tiny_model, tokenizer, [0], TEXTS, seq_len=8, batch_size=4)
    keys = reference_keys(tiny_model, tokenizer, 0, TEXTS, seq_len=8)
    assert stats[0].token_count == keys.shape[0]
    assert_close_to(stats[0], mean_outer(keys))


def test_stops_after_the_deepest_requested_layer(tiny_model, tokenizer):
    template = template_for(tiny_model)
    calls = {"later block": 0, "deepest": 0, "head": 0}

    def count(key):
        def hook(*_):
            calls[key] += 1
        return hook

    handles = [
        tiny_model.get_submodule(template.block_name(2)).register_forward_hook(count("later block")),
        tiny_model.get_submodule(template.mlp_out_name(1)).register_forward_hook(count("deepest")),
        tiny_model.get_output_embeddings().register_forward_hook(count("head")),
    ]
    try:
        compute_covariance(tiny_model, tokenizer, [0, 1], TEXTS, batch_size=4)
    finally:
        for handle in handles:
            handle.remove()
    assert calls["later block"] == 0 and calls["head"] == 0
    assert calls["deepest"] >= 1


def test_leaves_the_model_as_it_was(tiny_model, tokenizer):
    tiny_model.train()
    before = {name: p.clone() for name, p in tiny_model.named_parameters()}
    compute_covariance(tiny_model, tokenizer, [1], TEXTS[:2])
    assert tiny_model.training
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in tiny_model.modules())
    assert all(torch.equal(before[name], p) for name, p in tiny_model.named_parameters())


def test_max_tokens_is_exact(tiny_model, tokenizer):
    seen = []
    stats = compute_covariance(tiny_model, tokenizer, LAYERS, TEXTS, max_tokens=37, batch_size=1, seq_len=12,
                               progress=lambda done, total: seen.append((done, total)))
    for layer in LAYERS:
        assert stats[layer].token_count == 37
        keys = reference_keys(tiny_model, tokenizer, layer, TEXTS, seq_len=12)[:37]  # the first 37, in order
        assert_close_to(stats[layer], mean_outer(keys))
    assert seen[-1] == (37, 37)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and len(seen) >= 2
    assert json.loads(stats[1].metadata["max_tokens"]) == 37


def test_max_samples_bounds_documents(tiny_model, tokenizer):
    stats = compute_covariance(tiny_model, tokenizer, [1], TEXTS, max_samples=3)
    keys = reference_keys(tiny_model, tokenizer, 1, TEXTS[:3])
    assert stats[1].token_count == keys.shape[0]
    assert_close_to(stats[1], mean_outer(keys))
    assert stats[1].metadata["documents"] == "3"


def test_float64_accumulation(tiny_model, tokenizer):
    stats = compute_covariance(tiny_model, tokenizer, [3], TEXTS, accumulate_dtype=torch.float64)
    assert stats[3].dtype == "float64" and stats[3].second_moment.dtype == torch.float64
    assert_close_to(stats[3], mean_outer(reference_keys(tiny_model, tokenizer, 3, TEXTS)))


def test_bfloat16_autocast_still_accumulates_in_float32(tiny_model, tokenizer):
    stats = compute_covariance(tiny_model, tokenizer, [1], TEXTS, autocast_dtype=torch.bfloat16)
    assert stats[1].second_moment.dtype == torch.float32
    assert stats[1].metadata["autocast_dtype"] == "bfloat16"
    assert_close_to(stats[1], mean_outer(reference_keys(tiny_model, tokenizer, 1, TEXTS)), rtol=5e-2)


def test_merging_parts_equals_the_whole(tiny_model, tokenizer):
    whole = compute_covariance(tiny_model, tokenizer, [1], TEXTS)[1]
    first = compute_covariance(tiny_model, tokenizer, [1], TEXTS[:3])[1]
    second = compute_covariance(tiny_model, tokenizer, [1], TEXTS[3:])[1]
    merged = merge_layer_statistics(first, second)
    assert merged.token_count == whole.token_count
    assert torch.allclose(merged.second_moment, whole.second_moment, rtol=1e-5, atol=1e-6)
    # the same through sums, as a data-parallel all-reduce would do it
    parts = [accumulate_second_moment_sums(tiny_model, tokenizer, [1], texts)[1] for texts in (TEXTS[:3], TEXTS[3:])]
    total = parts[0].merge(parts[1])
    assert total.count == whole.token_count
    assert torch.allclose(total.mean(), whole.second_moment, rtol=1e-5, atol=1e-6)
    assert torch.allclose(first.to_sum().merge(second.to_sum()).mean(), whole.second_moment, rtol=1e-5, atol=1e-6)


def test_sum_helpers():
    keys = torch.randn(10, 4, dtype=torch.float64)
    part = SecondMomentSum.zeros(4, dtype=torch.float64).add_(keys[:3]).add_(keys[3:])
    assert part.count == 10
    assert torch.allclose(part.mean(), keys.T @ keys / 10)
    padded = SecondMomentSum.zeros(4, dtype=torch.float64).add_(torch.cat([keys, torch.zeros(5, 4)]), count=10)
    assert padded.count == 10 and torch.allclose(padded.mean(), part.mean())
    assert torch.allclose(second_moment_from_sum(part.total, part.count), keys.T @ keys / 10)
    with pytest.raises(StatisticsError):
        second_moment_from_sum(torch.zeros(4, 4), 0)


def test_corpus_identity_and_metadata_are_recorded(tiny_model, tokenizer, tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    corpus = open_corpus(path)
    stats = compute_covariance(tiny_model, tokenizer, [1], corpus, metadata={"model": "fp:abc", "note": {"a": 1}})
    meta = stats[1].metadata
    assert json.loads(meta["corpus"]) == corpus.identity
    assert meta["model"] == "fp:abc" and json.loads(meta["note"]) == {"a": 1}
    assert meta["seq_len"] == "256" and meta["accumulate_dtype"] == "float32" and meta["created_at"]
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items())
    assert_close_to(stats[1], mean_outer(reference_keys(tiny_model, tokenizer, 1, TEXTS)))


def test_bad_arguments(tiny_model, tokenizer):
    with pytest.raises(InputError, match="out of range"):
        compute_covariance(tiny_model, tokenizer, [4], TEXTS)
    with pytest.raises(InputError):
        compute_covariance(tiny_model, tokenizer, [], TEXTS)
    with pytest.raises(InputError):
        compute_covariance(tiny_model, tokenizer, [1], TEXTS, max_tokens=0)
    with pytest.raises(StatisticsError, match="no tokens") as info:
        compute_covariance(tiny_model, tokenizer, [1], ["", "   "])
    assert info.value.hint


# ------------------------------------------------------------------------------ rows and batches


def bos_tokenizer():
    """The tiny tokenizer, made to add a BOS (id 0) by default, as Llama-3's does."""
    from tiny_models import _tokenizer_json
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer.from_str(_tokenizer_json())
    raw.post_processor = processors.TemplateProcessing(
        single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", 0)])
    return PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   pad_token="<|endoftext|>")


def test_rows_keep_the_default_bos_on_every_row(tokenizer):
    tok = bos_tokenizer()
    text = TEXTS[1]
    plain = tokenizer(text, add_special_tokens=False)["input_ids"]
    rows = list(token_rows(tok, [text], seq_len=6))
    assert all(row[0] == 0 and len(row) <= 6 for row in rows)
    assert [i for row in rows for i in row[1:]] == plain
    budget = list(token_rows(tok, [text, text], seq_len=6, max_tokens=13))
    assert sum(map(len, budget)) == 13


def test_rows_without_special_tokens(tokenizer):
    counter = {}
    rows = list(token_rows(tokenizer, TEXTS + ["", "  "], seq_len=5, max_samples=4, counter=counter))
    assert [i for row in rows for i in row] == [i for t in TEXTS[:4] for i in tokenizer(t)["input_ids"]]
    assert counter["documents"] == 4 and counter["rows"] == len(rows)


def test_length_sorted_batches():
    rows = [[1] * n for n in (3, 9, 1, 7, 2)]
    batches = list(length_sorted_batches(rows, 2, pad_id=0))
    assert [tuple(ids.shape) for ids, _ in batches] == [(2, 9), (2, 3), (1, 1)]
    assert sum(int(mask.sum()) for _, mask in batches) == 22
    ids, mask = batches[0]
    assert mask[1].tolist() == [1] * 7 + [0] * 2 and ids[1, 7:].tolist() == [0, 0]
    # with a token-slot budget, further rows of exactly the batch's width join it (no extra padding)
    rows = [[1] * n for n in (3, 3, 9, 3, 1, 3, 2, 3)]
    budget = list(length_sorted_batches(rows, 2, pad_id=0, max_slots=12))
    assert [tuple(ids.shape) for ids, _ in budget] == [(2, 9), (4, 3), (2, 2)]
    assert all(int(mask.sum()) == n for (_, mask), n in zip(budget, (12, 12, 3)))


# ------------------------------------------------------------------------------ storage


def make_stats(dtype=torch.float32):
    keys = torch.randn(50, 6, dtype=dtype)
    return LayerStatistics(3, "model.layers.3.mlp.down_proj", keys.T @ keys / 50, 50, str(dtype)[6:],
                           {"corpus": json.dumps({"kind": "text", "path": "/x.txt"}), "seq_len": "256"})


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_safetensors_round_trip(tmp_path, dtype):
    stats = make_stats(dtype)
    path = save_layer_statistics(tmp_path / "stats" / "layer_3.safetensors", stats)
    loaded = load_layer_statistics(path)
    assert torch.equal(loaded.second_moment, stats.second_moment)
    assert (loaded.layer, loaded.module, loaded.token_count, loaded.dtype) == (3, stats.module, 50, stats.dtype)
    assert loaded.metadata == stats.metadata
    assert [p.name for p in path.parent.iterdir()] == ["layer_3.safetensors"]  # no temporary file left
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        header = handle.metadata()
    assert header["layer"] == "3" and header["token_count"] == "50" and header["format"] == "wdsp-layer-statistics"


def test_round_trip_of_computed_statistics(tiny_model, tokenizer, tmp_path):
    stats = compute_covariance(tiny_model, tokenizer, [2], TEXTS[:3])[2]
    loaded = load_layer_statistics(save_layer_statistics(tmp_path / "l2.safetensors", stats))
    assert torch.equal(loaded.second_moment, stats.second_moment) and loaded.metadata == stats.metadata


def test_overwrite_is_atomic_replace(tmp_path):
    path = tmp_path / "l.safetensors"
    save_layer_statistics(path, make_stats())
    newer = make_stats()
    save_layer_statistics(path, newer)
    assert torch.equal(load_layer_statistics(path).second_moment, newer.second_moment)
    assert len(list(tmp_path.iterdir())) == 1


def test_missing_statistics_file(tmp_path):
    with pytest.raises(StatisticsError, match="not found") as info:
        load_layer_statistics(tmp_path / "none.safetensors")
    assert info.value.hint


@pytest.mark.parametrize("damage", ["garbage", "truncated", "foreign"])
def test_corrupt_statistics_file(tmp_path, damage):
    path = save_layer_statistics(tmp_path / "l.safetensors", make_stats())
    if damage == "garbage":
        path.write_bytes(b"not a safetensors file at all")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:-40])
    else:
        from safetensors.torch import save_file

        save_file({"weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(StatisticsError, match="l.safetensors") as info:
        load_layer_statistics(path)
    assert info.value.hint


def test_statistics_over_the_models_own_lazy_samples_equal_those_over_the_materialised_list(tiny_model, tokenizer):
    # the lazy corpus runs the same model to write its texts while statistics are being gathered
    from wdsp_cli.data.corpus import model_samples_corpus, sample_texts_from_model

    lazy = model_samples_corpus(tiny_model, tokenizer, 6, seed=3, max_new_tokens=8, batch_size=2)
    texts = sample_texts_from_model(tiny_model, tokenizer, 6, seed=3, max_new_tokens=8, batch_size=2)
    from_lazy = compute_covariance(tiny_model, tokenizer, [1, 2], lazy, batch_size=2)
    from_list = compute_covariance(tiny_model, tokenizer, [1, 2], texts, batch_size=2)
    for layer in (1, 2):
        assert from_lazy[layer].token_count == from_list[layer].token_count > 0
        torch.testing.assert_close(from_lazy[layer].second_moment, from_list[layer].second_moment)
