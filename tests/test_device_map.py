"""Mixed placement with accelerate on CPU: layers that are not edited offloaded to disk (meta
weights, moved in by hooks at each forward), edited layers in memory. The edit and the
evaluation equal those of the plain model bit for bit; editing an offloaded layer is refused."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_models import tiny_llama

from wdsp_cli.config import EditConfig
from wdsp_cli.data.requests import EditRequest, LocalityProbe
from wdsp_cli.editing.batch import edit_batch
from wdsp_cli.errors import EditError
from wdsp_cli.evaluation.scoring import evaluate_counterfact

REQUESTS = [EditRequest("The capital of {} is", "France", "Berlin", "Paris", ("France's capital is",),
                        (LocalityProbe("The capital of Germany is", "Berlin"),)),
            EditRequest("{} plays for", "Lionel Messi", "Japan", "Argentina")]
MAP = {"model.embed_tokens": "cpu", "model.layers.0": "disk", "model.layers.1": "cpu", "model.layers.2": "cpu",
       "model.layers.3": "disk", "model.norm": "cpu", "model.rotary_emb": "cpu", "lm_head": "cpu"}


@pytest.fixture()
def dispatched(tmp_path):
    from accelerate import dispatch_model

    return dispatch_model(tiny_llama(), device_map=MAP, offload_dir=str(tmp_path / "offload"))


def same(a: dict, b: dict) -> bool:
    return all(a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in a)


def test_edit_and_evaluation_equal_the_plain_model(dispatched, tokenizer):
    assert dispatched.model.layers[0].mlp.down_proj.weight.is_meta
    plain = tiny_llama()
    config = EditConfig(layers=(1, 2), v_num_grad_steps=4, mom2_update_weight=1.0)
    moments = {l: torch.eye(128) for l in config.layers}
    a = edit_batch(plain, tokenizer, REQUESTS, config, moments, ["{}", "He is a musician. {}"])
    b = edit_batch(dispatched, tokenizer, REQUESTS, config, moments, ["{}", "He is a musician. {}"])
    for x, y in zip(a.diff.updates, b.diff.updates):
        assert torch.equal(x.left, y.left) and torch.equal(x.right, y.right)
    assert same(evaluate_counterfact(plain, tokenizer, REQUESTS), evaluate_counterfact(dispatched, tokenizer, REQUESTS))


def test_an_offloaded_layer_cannot_be_edited(dispatched, tokenizer):
    config = EditConfig(layers=(0, 1), v_num_grad_steps=2, mom2_update_weight=1.0)
    with pytest.raises(EditError, match="offloaded"):
        edit_batch(dispatched, tokenizer, REQUESTS, config, {l: torch.eye(128) for l in (0, 1)}, ["{}"])


def test_load_model_with_a_device_map_offloads_and_still_answers(tmp_path):
    from workspace_helpers import make_model_dir

    from wdsp_cli.model.loading import load_model

    folder = make_model_dir(tmp_path / "model")
    model, tok = load_model(folder, device_map=MAP, offload_folder=tmp_path / "offload")
    plain, _ = load_model(folder)
    assert model.model.layers[3].mlp.down_proj.weight.is_meta
    ids = tok(["The capital of France is"], return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, plain(input_ids=ids).logits)


def test_a_workspace_keeps_its_placement(tmp_path):
    import json

    from typer.testing import CliRunner
    from workspace_helpers import make_model_dir

    from wdsp_cli.cli import app
    from wdsp_cli.workspace.checkout import load_base
    from wdsp_cli.workspace.store import Workspace

    folder = make_model_dir(tmp_path / "model")
    ws = tmp_path / "ws"
    placement = {"model.embed_tokens": "cpu", "model.layers": "cpu", "model.norm": "cpu", "model.rotary_emb": "cpu",
                 "lm_head": "cpu"}
    result = CliRunner().invoke(app, ["init", "--model", str(folder), "--device-map", json.dumps(placement),
                                      "-w", str(ws)])
    assert result.exit_code == 0, result.stderr
    workspace = Workspace.open(ws)
    assert workspace.model["placement"]["device_map"] == placement
    model, _ = load_base(workspace)  # placed by the recorded map, and its fingerprint still matches
    assert next(model.parameters()).device.type == "cpu"
    bad = CliRunner().invoke(app, ["init", "--model", str(folder), "--device-map", "everywhere", "-w", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "--device-map" in bad.stderr
