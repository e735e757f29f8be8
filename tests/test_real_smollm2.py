"""Real edits on the default model: 20 CounterFact records, MEMIT and PMET.

Each method must reach efficacy success >= 90% on its batch while the neighbourhood success
drops by no more than 10 points from the unedited model's. Statistics: WikiText-2 from
../shared/data, computed once per session.
"""

import pytest
import torch

from wdsp_cli.config import preset
from wdsp_cli.data.requests import load_requests
from wdsp_cli.editing.batch import edit_batch, edited_modules
from wdsp_cli.evaluation.scoring import evaluate_counterfact
from wdsp_cli.model.weights import WeightState
from wdsp_cli.optimisation.prompts import generate_context_templates

pytestmark = pytest.mark.real
STATS_TOKENS = 50_000


@pytest.fixture(scope="module")
def smollm2():
    from wdsp_cli.model.loading import load_model

    return load_model("smollm2-135m-instruct")


@pytest.fixture(scope="module")
def moments(smollm2, data_dir):
    from wdsp_cli.data.corpus import open_corpus
    from wdsp_cli.statistics.covariance import compute_covariance

    model, tok = smollm2
    layers = sorted(set(preset("memit-smollm2").layers) | set(preset("pmet-smollm2").layers))
    corpus = open_corpus(data_dir / "text" / "wikitext2_raw_test.txt")
    stats = compute_covariance(model, tok, layers, corpus, max_tokens=STATS_TOKENS)
    return {l: s.second_moment for l, s in stats.items()}


@pytest.mark.parametrize("method", ["memit", "pmet"])
def test_twenty_counterfact_edits_land_and_neighbours_stay(smollm2, moments, data_dir, method):
    model, tok = smollm2
    requests = load_requests(data_dir / "counterfact" / "counterfact_rome.jsonl", limit=20)
    config = preset(f"{method}-smollm2")
    before = evaluate_counterfact(model, tok, requests)
    templates = generate_context_templates(model, tok, config.context_template_count,
                                           config.context_template_length, config.seed)
    state = WeightState(model)
    snapshot = state.snapshot(edited_modules(model, config))
    try:
        edit = edit_batch(model, tok, requests, config, moments, templates, state)
        after = evaluate_counterfact(model, tok, requests)
    finally:
        state.restore(snapshot)  # the next test starts from the base model
    print(method, "before", before, "after", after, "timings", edit.report["timings_s"])
    assert after["efficacy"] >= 90.0, after
    assert after["locality"] >= before["locality"] - 10.0, (before, after)
    assert after["generalization"] > before["generalization"], (before, after)
    assert torch.isfinite(torch.tensor(edit.report["loss"])).all()
