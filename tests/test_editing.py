"""One batch edit end to end on tiny models: the edit lands, is replayable, and fails safely."""

import pytest
import torch

from wdsp_cli.config import EditConfig
from wdsp_cli.data.requests import EditRequest
from wdsp_cli.editing.batch import edit_batch, edited_modules, write_targets
from wdsp_cli.errors import StatisticsError
from wdsp_cli.evaluation.scoring import score_targets
from wdsp_cli.methods import method as registered
from wdsp_cli.model.architectures import template_for
from wdsp_cli.model.hooks import hooks
from wdsp_cli.model.weights import WeightDiff, WeightState
from wdsp_cli.optimisation.reference import optimise_each_request
from wdsp_cli.optimisation.targets import OptimisationSettings

REQUESTS = [
    EditRequest(prompt="The capital of {} is", subject="France", target_new="Berlin"),
    EditRequest(prompt="{} plays for", subject="Lionel Messi", target_new="Japan"),
    EditRequest(prompt="The mother tongue of {} is", subject="Danielle Darrieux", target_new="English"),
]


def _identity_moments(model, layers):
    d_in = 128 if template_for(model).family == "llama" else 256
    return {l: torch.eye(d_in) for l in layers}


@pytest.mark.parametrize("method", ["memit", "pmet"])
def test_single_layer_edit_with_tiny_lambda_writes_the_optimised_value_exactly(tiny_model, tokenizer, method):
    # n = 1, one template, lambda -> 0: W' k = W k + (Z - V), so the target point now outputs Z.
    config = EditConfig(method=method, layers=(2,), v_num_grad_steps=6, clamp_norm_factor=4.0,
                        mom2_update_weight=1e-6, v_weight_decay=0.0)
    edit = edit_batch(tiny_model, tokenizer, REQUESTS, config, _identity_moments(tiny_model, [2]), ["{}"])
    point = registered(method).target(template_for(tiny_model), 2)
    targets = edit.residuals.target(point)
    for i, r in enumerate(REQUESTS):
        batch = tokenizer([r.rewrite_prompt], return_tensors="pt")
        with hooks(tiny_model, outputs=[point]) as trace:
            tiny_model(**batch)
        from wdsp_cli.optimisation.prompts import fill, subject_last_token

        _, index = subject_last_token(tokenizer, *fill("{}", r.prompt, r.subject))
        torch.testing.assert_close(trace.outputs[point][0, index], targets[i], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("method", ["memit", "pmet"])
def test_edit_raises_target_probability_and_replays_bit_for_bit(tiny_model, tokenizer, method, tmp_path):
    from tiny_models import tiny_gpt2, tiny_llama

    # Random tiny models pass little information between positions, so put the subject last:
    # its delta then feeds the next-token prediction directly.
    requests = [EditRequest(prompt="Paris is the capital of {}", subject="France", target_new="Japan"),
                EditRequest(prompt="He plays the piano in {}", subject="London", target_new="Berlin")]
    config = EditConfig(method=method, layers=(1, 2), v_num_grad_steps=15, clamp_norm_factor=1000.0,
                        mom2_update_weight=1.0, v_weight_decay=0.0)
    prompts = [r.rewrite_prompt for r in requests]
    targets = [r.target_new for r in requests]
    before, _ = score_targets(tiny_model, tokenizer, prompts, targets)
    edit = edit_batch(tiny_model, tokenizer, requests, config, _identity_moments(tiny_model, config.layers),
                      ["{}", "He is a musician. {}"])
    after, _ = score_targets(tiny_model, tokenizer, prompts, targets)
    assert (after < before - 0.5).all(), (before, after)
    edit.diff.save(tmp_path / "1.safetensors")
    fresh = (tiny_llama if template_for(tiny_model).family == "llama" else tiny_gpt2)()
    WeightState(fresh).apply_diffs([WeightDiff.load(tmp_path / "1.safetensors")])
    for (name, a), b in zip(tiny_model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name
    assert [u.module for u in edit.diff.updates] == [template_for(tiny_model).mlp_out_name(l) for l in (1, 2)]
    assert len(edit.report["updates"]) == len(requests)


def test_failure_midway_puts_every_weight_back(tokenizer):
    from tiny_models import tiny_llama

    model = tiny_llama()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    moments = {1: torch.eye(128), 2: torch.eye(64)}  # layer 2's statistics have the wrong size
    config = EditConfig(layers=(1, 2), v_num_grad_steps=3, mom2_update_weight=1.0)
    with pytest.raises(StatisticsError, match="layer 2"):
        edit_batch(model, tokenizer, REQUESTS, config, moments, ["{}"])
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    with pytest.raises(StatisticsError, match=r"no covariance statistics for layer\(s\) \[2\]"):
        edit_batch(model, tokenizer, REQUESTS, config, {1: torch.eye(128)}, ["{}"])
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("method", ["memit", "pmet"])
def test_sp_sparsifies_the_written_delta_reproducibly(tokenizer, method):
    from tiny_models import tiny_llama

    config = EditConfig(method=method, layers=(1, 2), v_num_grad_steps=4, mom2_update_weight=1.0).replace(sp=True)
    runs = []
    for _ in range(2):
        model = tiny_llama()
        edit = edit_batch(model, tokenizer, REQUESTS, config, _identity_moments(model, config.layers), ["{}"],
                          iteration=3)
        point = registered(method).target(template_for(model), 2)
        delta = edit.residuals.delta[point]
        density = (delta != 0).float().mean(1)
        torch.testing.assert_close(density, torch.tensor(edit.report["sp"]["density"]))
        assert ((density > 0.3) & (density < 0.7)).all()  # about pr * (1 - dr) = 0.49 of 64 entries
        runs.append((delta, model.get_submodule(template_for(model).mlp_out_name(1)).weight.clone()))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])


@pytest.mark.parametrize("mode", ["sinkhorn", "exact", "dirac"])
def test_wd_modes_run_inside_an_edit_and_shrink_delta(tokenizer, mode):
    from tiny_models import tiny_gpt2

    base = EditConfig(layers=(1, 2), v_num_grad_steps=8, clamp_norm_factor=100.0, mom2_update_weight=1.0,
                      v_weight_decay=0.0)
    norms = {}
    for wd in (False, True):
        model = tiny_gpt2()
        config = base.replace(wd=wd, wd_mode=mode, wd_weight=5.0)
        edit = edit_batch(model, tokenizer, REQUESTS, config, _identity_moments(model, config.layers), ["{}"])
        norms[wd] = torch.tensor(edit.report["delta_norm"]["transformer.h.2"])
        assert edit.diff.is_finite()
    assert (norms[True] < norms[False]).all(), norms


@pytest.mark.parametrize("method", ["memit", "pmet"])
def test_per_request_reference_edit_matches_the_batched_edit(tiny_model, tokenizer, method):
    config = EditConfig(method=method, layers=(1, 2), v_num_grad_steps=6, mom2_update_weight=1.0)
    moments = _identity_moments(tiny_model, config.layers)
    templates = ["{}", "He is a musician. {}"]
    state = WeightState(tiny_model)
    snapshot = state.snapshot(edited_modules(tiny_model, config))
    batched = edit_batch(tiny_model, tokenizer, REQUESTS, config, moments, templates, state)
    state.restore(snapshot)
    points = registered(method).points(template_for(tiny_model), config.z_layer)
    oracle = optimise_each_request(tiny_model, tokenizer, REQUESTS, templates, points,
                                   OptimisationSettings.from_config(config), config.kl_prompt)
    alone = write_targets(tiny_model, tokenizer, REQUESTS, config, oracle, moments, templates, state)
    assert torch.equal(batched.residuals.updates, alone.residuals.updates)
    for a, b in zip(batched.diff.updates, alone.diff.updates):
        # batching changes float rounding, which Adam amplifies a little (tests/test_residuals.py)
        assert float((a.dense() - b.dense()).norm()) <= 1e-2 * float(b.dense().norm())
