"""Health figures against straightforward computations: perplexity against a one-text-at-a-time
loop over the tokens, drift against torch.linalg norms on tiny matrices and a tiny model's edit."""

from __future__ import annotations

import math

import pytest
import torch

from wdsp_cli.evaluation.health import perplexity, spectral_norm, weight_drift

TEXTS = ["The capital of France is Paris. The capital of Germany is Berlin.",
         "He is a musician.", "Apple was founded by Steve Jobs. Microsoft was founded by Bill Gates."]


def _plain_perplexity(model, tokenizer, texts, seq_len):
    """One window at a time, one token at a time: sum of -log p(t_k | t_<k) within each window."""
    total, count = 0.0, 0
    for text in texts:
        ids = tokenizer(text).input_ids
        for i in range(0, len(ids), seq_len):
            window = ids[i : i + seq_len]
            for k in range(1, len(window)):
                with torch.no_grad():
                    logits = model(input_ids=torch.tensor([window[:k]])).logits[0, -1].double()
                total -= float(torch.log_softmax(logits, -1)[window[k]])
                count += 1
    return math.exp(total / count), count


@pytest.mark.parametrize("seq_len", [256, 5])
def test_perplexity_equals_the_plain_loop(tiny_model, tokenizer, seq_len):
    ppl, tokens = perplexity(tiny_model, tokenizer, TEXTS, seq_len=seq_len, batch_size=2)
    expected, count = _plain_perplexity(tiny_model, tokenizer, TEXTS, seq_len)
    assert tokens == count and ppl == pytest.approx(expected, rel=1e-4)


def test_spectral_norm_and_drift_match_linalg():
    g = torch.Generator().manual_seed(0)
    W0 = torch.randn(64, 128, generator=g)
    Wt = W0 + 0.1 * torch.randn(64, 1, generator=g) @ torch.randn(1, 128, generator=g)
    exact0, exactt = (float(torch.linalg.matrix_norm(W.double(), ord=2)) for W in (W0, Wt))
    assert spectral_norm(W0, iterations=300) == pytest.approx(exact0, rel=1e-6)
    drift = weight_drift(Wt, W0, iterations=300)
    assert drift["relative_frobenius"] == pytest.approx(float((Wt - W0).double().norm() / W0.double().norm()), rel=1e-9)
    assert drift["spectral_ratio"] == pytest.approx(exactt / exact0, rel=1e-6)
    assert weight_drift(W0, W0)["relative_frobenius"] == 0.0 and weight_drift(W0, W0)["spectral_ratio"] == 1.0


def test_drift_of_a_tiny_models_edit_is_its_update_norm(tokenizer):
    from tiny_models import tiny_llama

    from wdsp_cli.config import EditConfig
    from wdsp_cli.data.requests import EditRequest
    from wdsp_cli.editing.batch import edit_batch

    model = tiny_llama()
    module = model.get_submodule("model.layers.2.mlp.down_proj")
    before = module.weight.detach().clone()
    config = EditConfig(layers=(2,), v_num_grad_steps=3, mom2_update_weight=1.0)
    edit = edit_batch(model, tokenizer, [EditRequest(prompt="{} plays for", subject="Lionel Messi", target_new="Japan")],
                      config, {2: torch.eye(128)}, ["{}"])
    drift = weight_drift(module.weight, before)
    update = edit.diff.updates[0].dense()
    assert drift["relative_frobenius"] == pytest.approx(float(update.double().norm() / before.double().norm()), rel=1e-5)
    assert drift["relative_frobenius"] > 0
