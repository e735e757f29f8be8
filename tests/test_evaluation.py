"""Batched scoring against a per-prompt implementation; CounterFact metrics on hand cases."""

import math

import pytest
import torch

from wdsp_cli.data.requests import EditRequest, LocalityProbe
from wdsp_cli.evaluation.metrics import counterfact_metrics, harmonic_mean
from wdsp_cli.evaluation.scoring import evaluate_counterfact, score_targets

PAIRS = [
    ("The capital of France is", "Paris"),
    ("Lionel Messi plays for", "the national team of Argentina"),
    ("Hi", "Rome"),
    ("The mother tongue of Danielle Darrieux is", "French"),
    ("Toyota is headquartered in", "Japan"),
]


def _per_prompt(model, tok, prompt, target):
    prompt_ids = tok(prompt).input_ids
    target_ids = tok(" " + target, add_special_tokens=False).input_ids
    ids = torch.tensor([prompt_ids + target_ids])
    logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    rows = range(len(prompt_ids) - 1, len(prompt_ids) - 1 + len(target_ids))
    nll = -sum(logp[r, t] for r, t in zip(rows, target_ids)) / len(target_ids)
    top1 = sum(int(logp[r].argmax() == t) for r, t in zip(rows, target_ids)) / len(target_ids)
    return float(nll), top1


@pytest.mark.parametrize("add_bos", [False, True])
def test_batched_scores_equal_per_prompt_scores(tiny_model, add_bos):
    from tiny_models import tiny_tokenizer

    tok = tiny_tokenizer(add_bos=add_bos)
    assert (tok("Hi").input_ids[0] == tok.bos_token_id) == add_bos
    nll, top1 = score_targets(tiny_model, tok, [p for p, _ in PAIRS], [t for _, t in PAIRS], batch_size=2)
    for i, (p, t) in enumerate(PAIRS):
        ref_nll, ref_top1 = _per_prompt(tiny_model, tok, p, t)
        assert nll[i].item() == pytest.approx(ref_nll, rel=1e-5)
        assert top1[i].item() == pytest.approx(ref_top1)


def test_counterfact_metrics_on_hand_computed_cases():
    nll = lambda *xs: torch.tensor(xs, dtype=torch.float32)  # noqa: E731
    out = counterfact_metrics(
        rewrite_new=nll(1.0, 3.0), rewrite_true=nll(2.0, 2.0),          # request 0 succeeds, 1 fails: ES 50
        para_new=nll(1.0, 1.0, 5.0), para_true=nll(2.0, 0.5, 1.0),       # req 0: 1/2, req 1: 0/1 -> PS 25
        para_request=torch.tensor([0, 0, 1]),
        neigh_new=nll(3.0, 3.0), neigh_true=nll(1.0, 4.0), neigh_request=torch.tensor([0, 1]),  # NS 50
    )
    assert out["efficacy"] == 50 and out["generalization"] == 25 and out["locality"] == 50
    assert out["score"] == pytest.approx(3 / (1 / 50 + 1 / 25 + 1 / 50))
    em = 100 * ((math.exp(-1) - math.exp(-2)) + (math.exp(-3) - math.exp(-2))) / 2
    assert out["efficacy_magnitude"] == pytest.approx(em, rel=1e-5)
    assert harmonic_mean([0.0, 90.0]) == 0.0
    assert harmonic_mean([80.0, float("nan")]) == 80.0


def test_evaluate_counterfact_uses_each_neighbours_own_answer(tiny_model, tokenizer):
    request = EditRequest(prompt="The capital of {} is", subject="France", target_new="Rome", target_true="Paris",
                          paraphrases=("France's capital city is",),
                          neighbours=(LocalityProbe("The capital of Germany is", "Berlin"),))
    out = evaluate_counterfact(tiny_model, tokenizer, [request])
    nll, _ = score_targets(tiny_model, tokenizer, ["The capital of Germany is"] * 2, ["Berlin", "Rome"])
    assert out["locality"] == (100.0 if nll[0] < nll[1] else 0.0)
    assert set(out) >= {"efficacy", "generalization", "locality", "score"}


def test_accuracy_protocol_is_token_top1_without_old_targets(tokenizer):
    from tiny_models import tiny_llama

    from wdsp_cli.data.requests import EditRequest, LocalityProbe
    from wdsp_cli.evaluation.scoring import evaluate_requests, score_targets

    model = tiny_llama()
    requests = [EditRequest("The capital of {} is", "France", "Berlin", paraphrases=("France has a capital,",),
                            neighbours=(LocalityProbe("Apple was founded by", "Steve Jobs"),)),
                EditRequest("{} plays for", "Lionel Messi", "Argentina")]
    out = evaluate_requests(model, tokenizer, requests)
    assert out["protocol"] == "accuracy"
    _, top1 = score_targets(model, tokenizer, ["The capital of France is", "Lionel Messi plays for"],
                            ["Berlin", "Argentina"])
    assert out["efficacy"] == pytest.approx(100 * float(top1.mean()))
    _, loc = score_targets(model, tokenizer, ["Apple was founded by"], ["Steve Jobs"])
    assert out["locality"] == pytest.approx(100 * float(loc[0]))


@pytest.mark.parametrize("add_bos", [False, True])
def test_next_token_predictions_match_one_prompt_at_a_time(add_bos):
    from tiny_models import tiny_gpt2, tiny_tokenizer

    from wdsp_cli.evaluation.scoring import next_token_predictions

    tok = tiny_tokenizer(add_bos=add_bos)
    model = tiny_gpt2()
    prompts = ["The capital of France is", "He is", "Apple was founded by Steve", "The Louvre is a museum in Paris,"]
    batched = next_token_predictions(model, tok, prompts, batch_size=3)
    with torch.no_grad():
        one_by_one = [int(model(input_ids=tok(p, return_tensors="pt").input_ids).logits[0, -1].argmax()) for p in prompts]
    assert batched.tolist() == one_by_one
