"""Weight diffs: factor form equals the dense update, safetensors round trip, fp32 replay."""

import pytest
import torch

from wdsp_cli.errors import EditError, WdspError
from wdsp_cli.model.architectures import template_for, weight_out_in
from wdsp_cli.model.weights import LayerUpdate, WeightDiff, WeightState


def _update(model, layer, seed, rank=3):
    tpl = template_for(model)
    module = tpl.mlp_out_name(layer)
    d_out, d_in = weight_out_in(model.get_submodule(module)).shape
    g = torch.Generator().manual_seed(seed)
    return LayerUpdate(module, 1e-2 * torch.randn(d_out, rank, generator=g), torch.randn(d_in, rank, generator=g))


def test_factor_form_equals_the_dense_update_in_the_weights_orientation(tiny_model):
    update = _update(tiny_model, 1, 0)
    module = tiny_model.get_submodule(update.module)
    before = module.weight.detach().clone()
    WeightState(tiny_model).apply(update)
    dense = update.dense()
    expected = before + (dense.T if template_for(tiny_model).family == "gpt2" else dense)  # Conv1D is [in, out]
    torch.testing.assert_close(module.weight.detach(), expected)
    assert update.nbytes == (dense.shape[0] + dense.shape[1]) * 3 * 4 < update.dense_nbytes


def test_diff_survives_a_safetensors_round_trip_bit_for_bit(tiny_model, tmp_path):
    diff = WeightDiff((_update(tiny_model, 0, 1), _update(tiny_model, 2, 2)), {"method": "memit", "note": "é"})
    diff.save(tmp_path / "d.safetensors")
    back = WeightDiff.load(tmp_path / "d.safetensors")
    assert back.metadata == diff.metadata
    assert [u.module for u in back.updates] == [u.module for u in diff.updates]
    for a, b in zip(diff.updates, back.updates):
        assert torch.equal(a.left, b.left) and torch.equal(a.right, b.right)
    assert not list(tmp_path.glob(".*tmp"))  # no temporary left behind


def test_replaying_diffs_on_a_fresh_model_gives_identical_bits():
    from tiny_models import tiny_llama

    live = tiny_llama(dtype=torch.bfloat16)
    diffs = [WeightDiff((_update(live, 1, s), _update(live, 2, s + 10))) for s in range(3)]
    state = WeightState(live)
    for d in diffs:
        state.apply_diffs([d])
    replay = tiny_llama(dtype=torch.bfloat16)
    WeightState(replay).apply_diffs(diffs)
    for (name, a), b in zip(live.state_dict().items(), replay.state_dict().values()):
        assert torch.equal(a, b), name
    # and equals cast(base_fp32 + sum of dense diffs), accumulated in float32
    base = tiny_llama(dtype=torch.bfloat16)
    module = diffs[0].updates[0].module
    w = base.get_submodule(module).weight.float()
    for d in diffs:
        w = w + d.updates[0].dense()
    assert torch.equal(live.get_submodule(module).weight, w.to(torch.bfloat16))


def test_snapshot_restore_and_refusals(tiny_model, tmp_path):
    update = _update(tiny_model, 1, 3)
    before = tiny_model.get_submodule(update.module).weight.detach().clone()
    state = WeightState(tiny_model)
    snap = state.snapshot([update.module])
    state.apply(update)
    state.restore(snap)
    assert torch.equal(tiny_model.get_submodule(update.module).weight, before)
    bad = LayerUpdate(update.module, update.left * float("nan"), update.right)
    with pytest.raises(EditError, match="non-finite"):
        WeightDiff((bad,)).save(tmp_path / "bad.safetensors")
    assert not (tmp_path / "bad.safetensors").exists()
    wrong = LayerUpdate(update.module, update.left[:5], update.right)
    with pytest.raises(EditError, match="shape"):
        state.apply(wrong)
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(WdspError, match="cannot read"):
        WeightDiff.load(tmp_path / "junk.safetensors")


def test_original_weights_puts_the_base_back_for_a_while(tiny_model):
    state = WeightState(tiny_model)
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    state.apply(_update(tiny_model, 1, seed=0))
    edited = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    with state.original_weights():
        assert all(torch.equal(v, before[k]) for k, v in tiny_model.state_dict().items())
    assert all(torch.equal(v, edited[k]) for k, v in tiny_model.state_dict().items())
