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


@pytest.mark.parametrize("bad", [dict(method="rome"), dict(layers=(5, 3)), dict(layers=()), dict(v_lr=0),
                                 dict(v_num_grad_steps=0), dict(kl_prompt="no slot"), dict(kl_factor=-1)])
def test_invalid_fields_are_named(bad):
    with pytest.raises(InputError) as info:
        EditConfig(**bad)
    assert list(bad)[0] in str(info.value)


def test_unknown_fields_and_presets_get_hints():
    with pytest.raises(InputError, match="v_lrr"):
        EditConfig.from_dict({"v_lrr": 1})
    with pytest.raises(InputError, match="choose one of"):
        preset("nope")
    assert PRESETS["memit-gptj"].layers == (3, 4, 5, 6, 7, 8) and PRESETS["pmet-gptj"].method == "pmet"


def test_wd_weight_defaults_per_scale_and_explicit_weight_wins():
    assert EditConfig(wd=True).wd_lambda_weight == 0.01
    assert EditConfig(wd=True, wd_scale="pow10").wd_lambda_weight == 1.0
    assert EditConfig(wd=True, wd_weight=0.5).wd_lambda_weight == 0.5
    with pytest.raises(InputError, match="wd_weight"):
        EditConfig(wd_weight=-1.0)


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
