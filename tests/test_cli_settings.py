"""Every hyper-parameter can be set from the command line: named options (--wd-reg) and
--set NAME=VALUE for the rest (v_lr, mom2_update_weight, clamp_norm_factor...), typed and checked
before anything changes."""

from __future__ import annotations

import json

import pytest
from workspace_helpers import (
    make_model_dir,
    tree_digest,
    wdsp,
    write_corpus,
    write_facts,
)

from wdsp_cli.config import EditConfig, parse_settings
from wdsp_cli.errors import InputError


@pytest.fixture(scope="module")
def ready(tmp_path_factory):
    root = tmp_path_factory.mktemp("settings")
    model = make_model_dir(root / "tiny-llama")
    ws = root / "ws"
    wdsp("init", "--model", model, "-w", ws)
    wdsp("covariance", "-w", ws, "--corpus", write_corpus(root / "corpus.txt"), "--tokens", 2000)
    return ws, write_facts(root / "facts.jsonl", 2)


def test_settings_are_typed_by_their_field():
    assert parse_settings(["v_lr=0.2", "v_num_grad_steps=7", "wd_counts_for_stopping=true", "wd_weight=none",
                           "sp_target=layer-residuals"]) == {
        "v_lr": 0.2, "v_num_grad_steps": 7, "wd_counts_for_stopping": True, "wd_weight": None,
        "sp_target": "layer-residuals"}
    config = EditConfig().replace(**parse_settings(["mom2_update_weight=5000", "clamp_norm_factor=2"]))
    assert config.mom2_update_weight == 5000.0 and config.clamp_norm_factor == 2.0
    for bad, named in (["v_lrr=1"], "v_lrr"), (["v_lr"], "NAME=VALUE"), (["v_lr=fast"], "not a float"), \
                      (["layers=1"], "layers=1"), (["wd=maybe"], "true or false"):
        with pytest.raises(InputError, match=named):
            parse_settings(bad)


def test_edit_takes_set_and_wd_reg_and_records_them(ready):
    ws, facts = ready
    report = json.loads(wdsp("edit", facts, "-w", ws, "--steps", 3, "--wd", "--wd-mode", "sinkhorn",
                             "--wd-reg", 0.1, "--set", "v_lr=0.2", "--set", "mom2_update_weight=5000",
                             "--set", "clamp_norm_factor=2", "--json").stdout)
    config = report["config"]
    assert (config["wd_reg"], config["v_lr"], config["mom2_update_weight"], config["clamp_norm_factor"]) == \
        (0.1, 0.2, 5000.0, 2.0)
    assert json.loads((ws / "config.json").read_text())["v_lr"] == 0.2


@pytest.mark.parametrize("args, message", [
    (["--set", "v_lrr=1"], "v_lrr"), (["--set", "v_lr=0"], "--set v_lr=0 must be > 0"),
    (["--wd-reg", "0"], "--wd-reg 0 must be > 0"), (["--sp-dropout", "1"], "--sp-dropout 1 must be in [0, 1)")])
def test_bad_settings_exit_2_and_change_nothing(ready, args, message):
    ws, facts = ready
    before = tree_digest(ws)
    result = wdsp("edit", facts, "-w", ws, *args, code=2)
    assert message in result.stderr and "wdsp_cli" not in result.stderr and tree_digest(ws) == before
