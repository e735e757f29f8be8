"""hooks(): records, edits, stops early, and always removes its hooks."""

import pytest
import torch

from wdsp_cli.model.architectures import template_for
from wdsp_cli.model.hooks import StopForward, hooks, run


def _no_hooks(model):
    return not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_records_inputs_and_outputs_and_stops_after_the_named_module(tiny_model, tokenizer):
    tpl = template_for(tiny_model)
    batch = tokenizer(["The capital of France is"], return_tensors="pt")
    later_calls = []
    handle = tiny_model.get_submodule(tpl.block_name(3)).register_forward_hook(lambda *a: later_calls.append(1))
    try:
        with hooks(tiny_model, inputs=[tpl.mlp_out_name(1)], outputs=[tpl.block_name(1)],
                   stop_after=tpl.block_name(1)) as trace:
            assert run(tiny_model, **batch) is None
    finally:
        handle.remove()
    assert later_calls == []
    d_in = 128 if tpl.family == "llama" else 256
    assert trace.inputs[tpl.mlp_out_name(1)].shape == (1, batch.input_ids.shape[1], d_in)
    assert trace.outputs[tpl.block_name(1)].shape == (1, batch.input_ids.shape[1], 64)
    assert _no_hooks(tiny_model)


def test_edit_changes_the_output_and_is_seen_downstream(tiny_model, tokenizer):
    tpl = template_for(tiny_model)
    batch = tokenizer(["The capital of France is"], return_tensors="pt")
    plain = tiny_model(**batch).logits
    with hooks(tiny_model, edits={tpl.block_name(2): lambda out: out + 1.0}, outputs=[tpl.block_name(2)]) as trace:
        edited = tiny_model(**batch).logits
    assert not torch.allclose(plain, edited)
    with hooks(tiny_model, outputs=[tpl.block_name(2)]) as again:
        tiny_model(**batch)
    torch.testing.assert_close(trace.outputs[tpl.block_name(2)], again.outputs[tpl.block_name(2)] + 1.0)
    assert _no_hooks(tiny_model)


def test_hooks_are_removed_after_an_exception(tiny_model, tokenizer):
    tpl = template_for(tiny_model)
    batch = tokenizer(["The capital of France is"], return_tensors="pt")

    def boom(out):
        raise RuntimeError("edit failed")

    with pytest.raises(RuntimeError, match="edit failed"):
        with hooks(tiny_model, inputs=[tpl.mlp_out_name(0)], edits={tpl.block_name(1): boom},
                   stop_after=tpl.block_name(2)):
            tiny_model(**batch)
    assert _no_hooks(tiny_model)
    with pytest.raises(StopForward):
        with hooks(tiny_model, stop_after=tpl.block_name(0)):
            tiny_model(**batch)  # StopForward escapes when the model is not called through run()
    assert _no_hooks(tiny_model)
