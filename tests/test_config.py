"""EditConfig validation, presets and JSON round trip."""

import json

import pytest

from wdsp_cli.config import PRESETS, EditConfig, preset
from wdsp_cli.errors import InputError


def test_json_round_trip_is_sorted_and_versioned():
    config = preset("memit-gptj").replace(seed=7)
    text = config.to_json()
    data = json.loads(text)
    assert list(data) == sorted(data) and "wdsp_version" in data
    assert EditConfig.from_json(text) == config


@pytest.mark.parametrize("bad, named", [
    (dict(method="rome"), "--method 'rome'"), (dict(layers=(5, 3)), "--layers 5,3"), (dict(layers=()), "--layers"),
    (dict(v_lr=0), "--set v_lr=0"), (dict(v_num_grad_steps=0), "--steps 0"), (dict(kl_prompt="no slot"), "kl_prompt"),
    (dict(kl_factor=-1), "--set kl_factor=-1"), (dict(mom2_update_weight=0), "--set mom2_update_weight=0"),
    (dict(wd_reg=0), "--wd-reg 0"), (dict(wd_mode="exactly"), "--wd-mode 'exactly'"),
    (dict(sp_prune=1.5), "--sp-prune 1.5")])
def test_invalid_fields_are_named_by_the_option_that_sets_them(bad, named):
    with pytest.raises(InputError) as info:
        EditConfig().replace(**bad)
    assert named in str(info.value) and "wdsp_cli" not in str(info.value)


def test_each_sp_rule_is_reported_alone():
    with pytest.raises(InputError) as info:
        EditConfig().replace(sp_dropout=1)
    assert "--sp-dropout 1 must be in [0, 1)" in str(info.value) and "--sp-prune" not in str(info.value)


def test_regulariser_settings_nest_but_serialise_flat_as_before():
    from wdsp_cli.regularisers.configs import SPConfig, WDConfig

    config = EditConfig().replace(wd=True, wd_mode="sinkhorn", sp=True, sp_prune=0.5)
    assert config.wd == WDConfig(enabled=True, mode="sinkhorn") and config.sp == SPConfig(enabled=True, prune=0.5)
    flat = config.to_dict()
    assert flat["wd"] is True and flat["wd_mode"] == "sinkhorn" and flat["sp_prune"] == 0.5
    assert {"wd", "wd_mode", "wd_scale", "wd_weight", "wd_reg", "wd_points", "wd_counts_for_stopping",
            "sp", "sp_prune", "sp_dropout", "sp_target"} <= set(flat)
    assert EditConfig.from_dict(flat) == config and config.replace(wd=WDConfig()).wd.enabled is False
    with pytest.raises(TypeError, match="from_dict"):
        EditConfig(wd=True)


def test_unknown_fields_and_presets_get_hints():
    with pytest.raises(InputError, match="v_lrr"):
        EditConfig.from_dict({"v_lrr": 1})
    with pytest.raises(InputError, match="choose one of"):
        preset("nope")
    assert PRESETS["memit-gptj"].layers == (3, 4, 5, 6, 7, 8) and PRESETS["pmet-gptj"].method == "pmet"


def test_wd_weight_defaults_per_scale_and_explicit_weight_wins():
    assert EditConfig().replace(wd=True).wd.lambda_weight == 0.01
    assert EditConfig().replace(wd=True, wd_scale="pow10").wd.lambda_weight == 1.0
    assert EditConfig().replace(wd=True, wd_weight=0.5).wd.lambda_weight == 0.5
    with pytest.raises(InputError, match="--wd-weight"):
        EditConfig().replace(wd_weight=-1.0)


def test_default_config_for_known_models_and_the_depth_rule():
    from wdsp_cli.config import default_config_for

    assert default_config_for("llama", 30, "pmet", 576) == preset("pmet-smollm2")
    assert default_config_for("gptj", 28, "memit") == preset("memit-gptj")
    assert default_config_for("llama", 32, "memit", 4096) == preset("memit-llama3-8b")
    assert default_config_for("llama", 4, "memit", 64).layers == (1, 2)   # tiny test models
    assert default_config_for("mistral", 40, "memit", 5120).layers == (5, 6, 7, 8, 9)
    assert default_config_for("gpt2", 1, "memit").layers == (0,)
    with pytest.raises(InputError, match="unknown method"):
        default_config_for("llama", 30, "rome")
