"""Batched target-value optimisation equals the one-request-at-a-time reference loop, and its
prefix key/value cache, length grouping and autocast option keep it so."""

from types import SimpleNamespace

import pytest
import torch

from wdsp_cli.data.requests import EditRequest
from wdsp_cli.errors import InputError
from wdsp_cli.methods import method as registered
from wdsp_cli.model.architectures import template_for
from wdsp_cli.optimisation import frozen as delta_free
from wdsp_cli.optimisation import prompts as grouping
from wdsp_cli.optimisation import targets as residuals
from wdsp_cli.optimisation.frozen import first_changed_block
from wdsp_cli.optimisation.reference import optimise_residuals_reference
from wdsp_cli.optimisation.targets import (
    OptimisationSettings,
    build_edit_prompts,
    optimise_residuals,
)

REQUESTS = [
    EditRequest(prompt="The capital of {} is", subject="France", target_new="Berlin"),
    EditRequest(prompt="{} plays for", subject="Lionel Messi", target_new="Japan national team"),
    EditRequest(prompt="The mother tongue of {} is", subject="Danielle Darrieux", target_new="English"),
    EditRequest(prompt="{}, a museum in", subject="The Louvre", target_new="Rome"),
    # a one-token subject at the very start: its bare and KL rows have no prefix (lookup 0)
    EditRequest(prompt="{} was founded by", subject="Apple", target_new="Bill Gates"),
]
TEMPLATES = ["{}", "The musician. {}", "He is a scientist in London. {}"]


def _fed_tokens(model, fn):
    """(fn(), number of token positions the model embedded while it ran)."""
    count = [0]

    def add(module, args, output):
        count[0] += args[0].numel()

    handle = model.get_input_embeddings().register_forward_hook(add)
    try:
        return fn(), count[0]
    finally:
        handle.remove()


def _assert_close_vectors(a, b, rel=5e-3):
    """||a - b|| <= rel ||b||: batching changes float rounding, which Adam's per-coordinate
    normalisation can amplify on coordinates whose gradient is near zero."""
    assert float((a - b).norm()) <= rel * float(b.norm()) + 1e-7, (float((a - b).norm()), float(b.norm()))


def _assert_same_optimisation(result, reference, points):
    """Same steps per request, losses, h and deltas (up to batching's float rounding)."""
    assert torch.equal(result.updates, reference.updates)
    torch.testing.assert_close(result.loss, reference.loss, rtol=1e-4, atol=1e-5)
    for p in points:
        torch.testing.assert_close(result.init[p], reference.init[p], rtol=1e-5, atol=1e-6)
        for i in range(len(result.updates)):
            _assert_close_vectors(result.delta[p][i], reference.delta[p][i])


def _settings(**kw):
    base = dict(v_lr=0.5, v_num_grad_steps=10, clamp_norm_factor=4.0, kl_factor=0.0625, v_weight_decay=0.5,
                early_stop_loss=5e-2)
    return OptimisationSettings(**{**base, **kw})


@pytest.mark.parametrize("method", ["memit", "pmet"])
def test_batched_optimisation_equals_the_per_request_loop(tiny_model, tokenizer, method):
    points = registered(method).points(template_for(tiny_model), 2)
    prompts = build_edit_prompts(tokenizer, REQUESTS, TEMPLATES)
    assert (prompts.lookup == 0).any() and (prompts.lookup > 0).any()
    settings = _settings()
    assert settings.prefix_cache  # the default: the cached path is the one checked against the loop
    result = optimise_residuals(tiny_model, prompts, points, settings)
    for i, request in enumerate(REQUESTS):
        init, delta, updates, _, _ = optimise_residuals_reference(tiny_model, tokenizer, request, TEMPLATES, points, settings)
        assert int(result.updates[i]) == updates
        for p in points:
            torch.testing.assert_close(result.init[p][i], init[p], rtol=1e-5, atol=1e-6)
            _assert_close_vectors(result.delta[p][i], delta[p])
            assert delta[p].norm() > 0


def test_per_request_early_stopping_and_clamp_match_the_loop(tokenizer):
    from tiny_models import tiny_llama

    model = tiny_llama()
    points = registered("memit").points(template_for(model), 2)
    prompts = build_edit_prompts(tokenizer, REQUESTS, TEMPLATES)
    # Pick a stopping threshold between the requests' step-0 losses so some stop at once.
    probe = optimise_residuals(model, prompts, points, _settings(v_num_grad_steps=1))
    losses = probe.loss.sort().values
    threshold = float(losses[1] + losses[2]) / 2
    settings = _settings(early_stop_loss=threshold, clamp_norm_factor=0.05, v_num_grad_steps=8)
    result = optimise_residuals(model, prompts, points, settings)
    assert (result.updates == 0).any() and (result.updates > 0).any()
    for i, request in enumerate(REQUESTS):
        init, delta, updates, _, _ = optimise_residuals_reference(model, tokenizer, request, TEMPLATES, points, settings)
        assert int(result.updates[i]) == updates
        _assert_close_vectors(result.delta[points[0]][i], delta[points[0]])
        # the clamp binds: ||delta|| <= 0.05 ||h||
        assert delta[points[0]].norm() <= 0.05 * init[points[0]].norm() * (1 + 1e-5)


def _already_predicted(model, tokenizer) -> list[EditRequest]:
    """REQUESTS whose target is the word the model already predicts after the bare prompt."""
    out = []
    for request in REQUESTS:
        ids = tokenizer(request.prompt.format(request.subject), return_tensors="pt").input_ids
        with torch.no_grad():
            top = int(model(input_ids=ids).logits[0, -1].argmax())
        word = tokenizer.decode([top]).strip()
        if word and tokenizer(" " + word, add_special_tokens=False).input_ids == [top]:
            out.append(EditRequest(prompt=request.prompt, subject=request.subject, target_new=word))
    return out


@pytest.mark.parametrize("k", [0, 2])
def test_most_probable_early_stopping_matches_the_loop(tiny_model, tokenizer, k):
    """ENCORE's MPES: a request stops at the forward where its targets have been top-1 on every
    prompt for the (k+1)-th time; the batched engine stops each request where the loop does.
    Half the batch asks for what the model already says (top-1 from the start), half for what
    the tiny model never reaches: the first stop after k updates, the others run to the end."""
    easy = _already_predicted(tiny_model, tokenizer)
    assert easy, "the tiny model predicts none of its own words: nothing to test"
    requests = easy + REQUESTS[:2]
    points = registered("memit").points(template_for(tiny_model), 2)
    prompts = build_edit_prompts(tokenizer, requests, ["{}"])
    settings = _settings(v_num_grad_steps=8, early_stop_loss=1e-9, most_probable_steps=k)
    result = optimise_residuals(tiny_model, prompts, points, settings)
    assert (result.updates[: len(easy)] <= k).all() and (result.updates[len(easy):] == 7).all()
    for i, request in enumerate(requests):
        init, delta, updates, _, _ = optimise_residuals_reference(tiny_model, tokenizer, request, ["{}"], points,
                                                                  settings)
        assert int(result.updates[i]) == updates
        if updates:
            _assert_close_vectors(result.delta[points[0]][i], delta[points[0]])


def test_optimisation_lowers_the_target_nll_and_leaves_weights_alone(tokenizer):
    from tiny_models import tiny_gpt2

    model = tiny_gpt2()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    points = registered("memit").points(template_for(model), 1)
    prompts = build_edit_prompts(tokenizer, REQUESTS, TEMPLATES)
    # the tiny random model's ||h|| is small, so weight decay would dominate: switch it off here
    first = optimise_residuals(model, prompts, points, _settings(v_num_grad_steps=1))
    final = optimise_residuals(model, prompts, points,
                               _settings(v_num_grad_steps=15, clamp_norm_factor=10.0, v_weight_decay=0.0))
    assert (final.nll < first.nll).all()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_prompts_score_each_target_token_once_with_weights_summing_to_one(tokenizer):
    prompts = build_edit_prompts(tokenizer, REQUESTS, TEMPLATES)
    assert prompts.num_requests == len(REQUESTS)
    per_request = torch.zeros(len(REQUESTS)).index_add(
        0, prompts.row_request[prompts.target_row], prompts.target_weight)
    torch.testing.assert_close(per_request, torch.ones(len(REQUESTS)))
    for row, pos, token in zip(prompts.target_row, prompts.target_pos, prompts.target_token):
        # the token is the next input, except the last target token, which is predicted past the row's end
        assert pos + 1 == prompts.rows.lengths[row] or prompts.rows.input_ids[row, pos + 1] == token


@pytest.mark.parametrize("method", ["memit", "pmet"])
@pytest.mark.parametrize("call_cost", [0, grouping.GROUP_CALL_COST])
def test_prefix_cache_equals_whole_rows_with_early_stopping(tiny_model, tokenizer, method, call_cost, monkeypatch):
    # call_cost 0: one decoder call per distinct row length; the default: fewer, padded groups
    monkeypatch.setattr(grouping, "GROUP_CALL_COST", call_cost)
    points = registered(method).points(template_for(tiny_model), 2)
    prompts = build_edit_prompts(tokenizer, REQUESTS, TEMPLATES)
    probe = optimise_residuals(tiny_model, prompts, points, _settings(v_num_grad_steps=1, prefix_cache=False))
    losses = probe.loss.sort().values
    settings = _settings(v_num_grad_steps=6, early_stop_loss=float(losses[1] + losses[2]) / 2)
    cached, fed_cached = _fed_tokens(tiny_model, lambda: optimise_residuals(tiny_model, prompts, points, settings))
    whole, fed_whole = _fed_tokens(tiny_model, lambda: optimise_residuals(
        tiny_model, prompts, points, _settings(**{**settings.__dict__, "prefix_cache": False})))
    # the cache pays for itself: prefixes run once, then only the tokens from the lookup on
    assert fed_cached < fed_whole
    assert (whole.updates == 0).any() and (whole.updates == 5).any()
    _assert_same_optimisation(cached, whole, points)


def test_length_groups_partition_the_rows():
    lengths = torch.tensor([5, 2, 2, 8, 3, 3, 3, 7, 2, 5, 6, 6, 6, 4])
    for cost, expected in [(0, 7), (10**6, 1)]:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(grouping, "GROUP_CALL_COST", cost)
            groups = grouping.length_groups(lengths)
        assert len(groups) == expected
        assert sorted(torch.cat(groups).tolist()) == list(range(len(lengths)))
        # groups hold consecutive lengths: each group's longest is shorter than the next one's shortest
        assert all(lengths[a].max() < lengths[b].min() for a, b in zip(groups, groups[1:]))
    assert grouping.length_groups(torch.tensor([], dtype=torch.long)) == []


def test_bfloat16_autocast_runs_in_float32_deltas_and_lowers_the_nll(tokenizer):
    from tiny_models import tiny_llama

    model = tiny_llama()
    points = registered("pmet").points(template_for(model), 2)
    prompts = build_edit_prompts(tokenizer, REQUESTS, TEMPLATES)
    kw = dict(clamp_norm_factor=10.0, v_weight_decay=0.0, autocast_dtype="bfloat16")
    first = optimise_residuals(model, prompts, points, _settings(v_num_grad_steps=1, **kw))
    final = optimise_residuals(model, prompts, points, _settings(v_num_grad_steps=10, **kw))
    assert all(final.delta[p].dtype == torch.float32 and final.init[p].dtype == torch.float32 for p in points)
    assert (final.nll < first.nll).all()


def test_autocast_dtype_from_config_accepts_names_and_none():
    config = SimpleNamespace(v_lr=0.5, v_num_grad_steps=5, clamp_norm_factor=0.75, kl_factor=0.0625,
                             v_weight_decay=0.5, early_stop_loss=0.05, early_stop="loss", most_probable_steps=3)
    assert OptimisationSettings.from_config(SimpleNamespace(**vars(config), autocast_dtype=None)).autocast_dtype is None
    for value, dtype in [("bfloat16", torch.bfloat16), ("torch.bfloat16", torch.bfloat16), ("bf16", torch.bfloat16),
                         (torch.float16, torch.float16), (None, None), ("none", None)]:
        settings = OptimisationSettings.from_config(SimpleNamespace(**vars(config), autocast_dtype=value))
        assert settings.autocast_dtype == dtype
    with pytest.raises(InputError):
        OptimisationSettings.from_config(SimpleNamespace(**vars(config), autocast_dtype="int8"))


def test_models_without_a_plain_dynamic_cache_are_fed_whole_rows(tiny_model, tokenizer, monkeypatch):
    prompts = build_edit_prompts(tokenizer, REQUESTS, TEMPLATES)
    assert residuals._make_feed(tiny_model, prompts).free.prefix is not None
    monkeypatch.setattr(delta_free, "DynamicCache", type("OtherCache", (), {}))
    feed = residuals._make_feed(tiny_model, prompts)
    assert feed.free.prefix is None and (feed.free.start == 0).all()


def _saved_bytes_peak(fn):
    """(fn(), the most bytes of distinct storage autograd held for backward at any one time while
    fn ran; parameters excluded, since every pass saves the same weights)."""
    import weakref

    live, peak, refs = [0], [0], {}

    def release(key, size):
        refs[key] -= 1
        if not refs[key]:
            del refs[key]
            live[0] -= size

    class Held:
        def __init__(self, tensor):
            self.tensor = tensor
            if isinstance(tensor, torch.nn.Parameter):
                return
            storage = tensor.untyped_storage()
            key, size = storage.data_ptr(), storage.nbytes()
            if key not in refs:
                refs[key] = 0
                live[0] += size
                peak[0] = max(peak[0], live[0])
            refs[key] += 1
            weakref.finalize(self, release, key, size)

    with torch.autograd.graph.saved_tensors_hooks(Held, lambda held: held.tensor):
        return fn(), peak[0]


@pytest.mark.parametrize("method", ["memit", "pmet"])
def test_requests_per_pass_bounds_the_graph_and_changes_no_result(tiny_model, tokenizer, method):
    from wdsp_cli.regularisers.wasserstein import WassersteinRegulariser

    points = registered(method).points(template_for(tiny_model), 2)
    prompts = build_edit_prompts(tokenizer, REQUESTS, TEMPLATES)
    probe = optimise_residuals(tiny_model, prompts, points, _settings(v_num_grad_steps=1))
    losses = probe.loss.sort().values
    # some requests stop early, so chunks shrink and empty out between steps
    settings = _settings(v_num_grad_steps=6, early_stop_loss=float(losses[1] + losses[2]) / 2)
    runs = {}
    for per_pass in (0, 2, 1):
        for wd in ("none", "exact", "sinkhorn"):
            extra = None if wd == "none" else WassersteinRegulariser(mode=wd, weight=0.5)
            runs[per_pass, wd] = _saved_bytes_peak(lambda: optimise_residuals(
                tiny_model, prompts, points, _settings(**{**settings.__dict__, "requests_per_pass": per_pass}),
                extra_loss=extra))
    whole, whole_peak = runs[0, "none"]
    assert (whole.updates == 0).any() and (whole.updates == 5).any()
    for (_, wd), (result, _) in runs.items():
        _assert_same_optimisation(result, runs[0, wd][0], points)
    # WD changes the deltas (so its gradient survives chunking)
    assert not torch.allclose(runs[1, "exact"][0].delta[points[-1]], whole.delta[points[-1]])
    assert runs[1, "none"][1] < 0.75 * whole_peak, (runs[1, "none"][1], whole_peak)


def test_requests_per_pass_keeps_the_graph_from_growing_with_the_batch(tiny_model, tokenizer):
    points = registered("memit").points(template_for(tiny_model), 2)
    peaks = {}
    for copies, per_pass in [(1, 0), (4, 0), (4, len(REQUESTS))]:
        prompts = build_edit_prompts(tokenizer, REQUESTS * copies, TEMPLATES)
        settings = _settings(v_num_grad_steps=2, early_stop_loss=1e-9, requests_per_pass=per_pass)
        peaks[copies, per_pass] = _saved_bytes_peak(lambda: optimise_residuals(tiny_model, prompts, points, settings))[1]
    # all at once, the graph grows with B; five per pass, B = 20 holds what B = 5 did
    assert peaks[4, 0] > 2.5 * peaks[1, 0], peaks
    assert peaks[4, len(REQUESTS)] < 1.1 * peaks[1, 0], peaks


def test_requests_per_pass_comes_from_the_caller_not_the_config():
    config = SimpleNamespace(v_lr=0.5, v_num_grad_steps=5, clamp_norm_factor=0.75, kl_factor=0.0625,
                             v_weight_decay=0.5, early_stop_loss=0.05, autocast_dtype=None,
                             early_stop="loss", most_probable_steps=3)
    assert OptimisationSettings.from_config(config).requests_per_pass == residuals.DEFAULT_REQUESTS_PER_PASS
    assert OptimisationSettings.from_config(config, 3).requests_per_pass == 3
    assert OptimisationSettings.from_config(config, 0).requests_per_pass == 0


@pytest.mark.parametrize("method, first", [("memit", 3), ("pmet", 2)])
def test_frozen_blocks_run_once_and_change_no_result(tiny_model, tokenizer, method, first):
    points = registered(method).points(template_for(tiny_model), 2)
    assert first_changed_block(template_for(tiny_model), points) == first
    prompts = build_edit_prompts(tokenizer, REQUESTS, TEMPLATES)
    probe = optimise_residuals(tiny_model, prompts, points, _settings(v_num_grad_steps=1, frozen_blocks=False))
    losses = probe.loss.sort().values
    settings = _settings(v_num_grad_steps=6, early_stop_loss=float(losses[1] + losses[2]) / 2, requests_per_pass=2)
    blocks = tiny_model.get_submodule(template_for(tiny_model).block.rsplit(".", 1)[0])
    calls = {0: 0, first - 1: 0, first: 0}

    def counter(index):
        def count(module, args, output):
            calls[index] += args[0].shape[0] if args else 1
        return count

    runs = {}
    for frozen in (True, False):
        handles = [blocks[i].register_forward_hook(counter(i)) for i in calls]
        try:
            runs[frozen] = optimise_residuals(tiny_model, prompts, points,
                                              _settings(**{**settings.__dict__, "frozen_blocks": frozen}))
        finally:
            for handle in handles:
                handle.remove()
        runs[frozen, "calls"] = dict(calls)
        calls.update({i: 0 for i in calls})
    whole = runs[False]
    assert (whole.updates == 0).any() and (whole.updates == 5).any()
    _assert_same_optimisation(runs[True], whole, points)
    # frozen: blocks below F see each row once (the no-grad pass before step 0); block F every step
    rows = len(prompts.row_request)
    assert runs[True, "calls"][0] == rows < runs[False, "calls"][0]
    assert runs[True, "calls"][first - 1] == runs[True, "calls"][0]
    assert runs[True, "calls"][first] == runs[False, "calls"][first]
    assert all(type(block).__name__ != "_StandIn" for block in blocks)


def test_first_changed_block_reads_the_points_of_each_family():
    from wdsp_cli.model.architectures import TEMPLATES

    for template in TEMPLATES:
        assert first_changed_block(template, [template.block_name(7)]) == 8
        assert first_changed_block(template, [template.attn_out_name(7), template.mlp_out_name(7)]) == 7
        assert first_changed_block(template, [template.block_name(3), template.mlp_out_name(5)]) == 4
        assert first_changed_block(template, [template.attn_out_name(0)]) == 0
        assert first_changed_block(template, ["lm_head"]) == 0


def test_chunks_are_the_fewest_and_near_equal():
    requests = torch.arange(50)
    for size, expected in [(16, [13, 13, 12, 12]), (25, [25, 25]), (7, [7, 7, 6, 6, 6, 6, 6, 6]), (50, [50]),
                           (64, [50]), (0, [50])]:
        chunks = residuals._chunks(requests, size)
        assert [len(c) for c in chunks] == expected
        assert torch.equal(torch.cat(chunks), requests)


@pytest.mark.parametrize("method, layer", [("memit", 3), ("pmet", 0), ("memit", 0)])
def test_frozen_blocks_at_the_ends_of_the_model(tiny_model, tokenizer, method, layer):
    # memit at the last block: every block is stood in for; pmet at block 0: none is
    points = registered(method).points(template_for(tiny_model), layer)
    prompts = build_edit_prompts(tokenizer, REQUESTS, TEMPLATES)
    settings = _settings(v_num_grad_steps=4, requests_per_pass=2)
    frozen = optimise_residuals(tiny_model, prompts, points, settings)
    whole = optimise_residuals(tiny_model, prompts, points, _settings(**{**settings.__dict__, "frozen_blocks": False}))
    _assert_same_optimisation(frozen, whole, points)


def test_the_prefix_is_packed_without_padding_and_only_above_the_frozen_blocks(tiny_model, tokenizer):
    points = registered("memit").points(template_for(tiny_model), 1)  # F = 2 of 4 blocks
    prompts = build_edit_prompts(tokenizer, REQUESTS, TEMPLATES)
    feed = residuals._make_feed(tiny_model, prompts, frozen_points=points)
    prefix, lookup = feed.free.prefix, prompts.lookup
    assert [k is None for k in prefix.keys] == [True, True, False, False]
    assert prefix.keys[2].shape[0] == int(lookup.sum()) + 1 < len(lookup) * int(lookup.max())
    # each row's packed entries are its prefix key/values from a plain forward of the row
    with torch.no_grad():
        for row in (0, int(lookup.argmax())):
            ids = prompts.rows.input_ids[row : row + 1, : int(lookup[row])]
            cache = tiny_model.base_model(input_ids=ids, use_cache=True).cache
            packed = prefix.keys[3][prefix.offset[row] : prefix.offset[row] + lookup[row]]
            torch.testing.assert_close(packed, cache.layers[3].keys[0].transpose(0, 1), rtol=1e-5, atol=1e-6)


def test_requests_that_share_a_key_share_one_delta_fitted_to_all_of_them(tiny_model, tokenizer):
    """Same subject, same text before it: the same key in every template, so one delta serves both
    (one optimised row, the mean of their NLLs); a request with another prefix keeps its own."""
    from wdsp_cli.editing.batch import optimise_targets
    from wdsp_cli.optimisation.targets import shared_key_groups

    requests = [EditRequest(prompt="{} plays for", subject="Lionel Messi", target_new="Japan"),
                EditRequest(prompt="{} was born in", subject="Lionel Messi", target_new="Rome"),
                EditRequest(prompt="The sport of {} is", subject="Lionel Messi", target_new="chess")]
    assert shared_key_groups(requests) == [0, 0, 1]
    prompts = build_edit_prompts(tokenizer, requests, TEMPLATES, groups=[0, 0, 1])
    assert prompts.num_requests == 2 and len(prompts.bare_row) == 2
    rows = prompts.row_request[prompts.target_row] == 0  # the group's NLL: the mean of its members'
    assert torch.isclose(prompts.target_weight[rows].sum(), torch.tensor(1.0))
    from wdsp_cli.config import EditConfig

    config = EditConfig(layers=(1, 2), v_num_grad_steps=4, context_template_count=2)
    result = optimise_targets(tiny_model, tokenizer, requests, config, TEMPLATES)
    point = result.points[-1]
    assert result.delta[point].shape[0] == 3
    assert torch.equal(result.delta[point][0], result.delta[point][1])
    assert not torch.equal(result.delta[point][0], result.delta[point][2])
    alone = optimise_targets(tiny_model, tokenizer, requests[2:], config, TEMPLATES)  # the third is unaffected
    torch.testing.assert_close(alone.delta[point][0], result.delta[point][2], rtol=1e-5, atol=1e-6)


def test_a_request_with_more_steps_changes_nothing_for_the_others(tiny_model, tokenizer):
    """Per-request step budgets (a request that changes a fact in force gets more): the others end
    exactly as with the common budget; the longer one equals the per-request loop with its budget."""
    points = registered("memit").points(template_for(tiny_model), 2)
    prompts = build_edit_prompts(tokenizer, REQUESTS, TEMPLATES)
    settings = _settings(v_num_grad_steps=4, early_stop_loss=1e-9)
    common = optimise_residuals(tiny_model, prompts, points, settings)
    steps = torch.tensor([4, 9, 4, 4, 4])
    longer = optimise_residuals(tiny_model, prompts, points, settings, steps=steps)
    assert longer.updates.tolist() == [3, 8, 3, 3, 3]
    for i in (0, 2, 3, 4):
        for p in points:
            assert torch.equal(longer.delta[p][i], common.delta[p][i])
        assert torch.equal(longer.loss[i], common.loss[i])
    _, delta, updates, _, _ = optimise_residuals_reference(tiny_model, tokenizer, REQUESTS[1], TEMPLATES, points,
                                                           _settings(v_num_grad_steps=9, early_stop_loss=1e-9))
    assert updates == 8
    for p in points:
        _assert_close_vectors(longer.delta[p][1], delta[p])
    with pytest.raises(ValueError, match="steps must be"):
        optimise_residuals(tiny_model, prompts, points, settings, steps=torch.tensor([4, 0, 4, 4, 4]))


def test_optimisation_steps_doubles_the_groups_that_change_a_fact_in_force():
    from wdsp_cli.config import EditConfig
    from wdsp_cli.editing.batch import optimisation_steps

    config = EditConfig(v_num_grad_steps=25)
    assert optimisation_steps(config, [0, 1, 2], None) is None
    assert optimisation_steps(config, [0, 1, 2], [None, None, None]) is None
    assert optimisation_steps(config, [0, 0, 1], ["B", None, None]).tolist() == [50, 25]  # the group takes it
    assert optimisation_steps(config.replace(changed_fact_steps=1.5), [0, 1], [None, "B"]).tolist() == [25, 38]
    assert optimisation_steps(config.replace(changed_fact_steps=1.0), [0, 1], [None, "B"]) is None
