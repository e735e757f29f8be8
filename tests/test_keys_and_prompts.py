"""Subject lookup, context templates, and template-averaged keys against per-prompt forwards."""

import pytest
import torch

from wdsp_cli.data.requests import EditRequest
from wdsp_cli.editing.keys import compute_keys, key_weights
from wdsp_cli.errors import InputError
from wdsp_cli.model.architectures import template_for
from wdsp_cli.model.hooks import hooks
from wdsp_cli.optimisation.prompts import (
    fill,
    generate_context_templates,
    subject_last_token,
)


def test_fill_places_the_prompt_and_the_subject_and_spans_the_subject():
    text, (a, b) = fill("Once upon a time. {}", "The capital of {} is", "France")
    assert text == "Once upon a time. The capital of France is" and text[a:b] == "France"
    text, (a, b) = fill("{}", "{} is in France, like France", "France")  # the slot, not a later mention
    assert (a, b) == (0, 6)
    with pytest.raises(InputError):
        fill("{}", "no slot here", "France")


@pytest.mark.parametrize("add_bos", [False, True])
def test_subject_last_token_is_the_token_ending_the_subject(add_bos):
    from tiny_models import tiny_tokenizer

    tok = tiny_tokenizer(add_bos=add_bos)
    text, span = fill("{}", "The mother tongue of {} is", "Danielle Darrieux")
    ids, index = subject_last_token(tok, text, span)
    assert ids == tok(text).input_ids
    prefix = tok.decode(ids[: index + 1], skip_special_tokens=True)
    assert prefix.endswith("Darrieux")
    assert not tok.decode(ids[:index], skip_special_tokens=True).endswith("Darrieux")


def test_context_templates_are_seeded_and_valid(tiny_model, tokenizer):
    a = generate_context_templates(tiny_model, tokenizer, 3, 6, seed=1)
    b = generate_context_templates(tiny_model, tokenizer, 3, 6, seed=1)
    state = torch.random.get_rng_state()
    generate_context_templates(tiny_model, tokenizer, 3, 6, seed=2)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    assert a == b and a[0] == "{}" and len(a) == 4
    assert all(t.endswith(". {}") and t.count("{}") == 1 for t in a[1:])


def test_keys_are_the_grouped_template_average_of_per_prompt_keys(tiny_model, tokenizer):
    tpl = template_for(tiny_model)
    requests = [EditRequest(prompt="The capital of {} is", subject="France", target_new="Rome"),
                EditRequest(prompt="{} plays for", subject="Lionel Messi", target_new="Japan")]
    templates = ["{}", "He is a musician. {}", "The Louvre. {}"]
    key_module, value_point = tpl.mlp_out_name(1), tpl.block_name(2)
    keys, values = compute_keys(tiny_model, tokenizer, requests, templates, key_module, value_point)
    torch.testing.assert_close(key_weights(3), torch.tensor([0.5, 0.25, 0.25]))
    for i, r in enumerate(requests):
        per_prompt = []
        for j, t in enumerate(templates):
            text, span = fill(t, r.prompt, r.subject)
            ids, index = subject_last_token(tokenizer, text, span)
            with hooks(tiny_model, inputs=[key_module], outputs=[value_point]) as trace:
                tiny_model(input_ids=torch.tensor([ids]))
            per_prompt.append(trace.inputs[key_module][0, index])
            if j == 0:
                torch.testing.assert_close(values[i], trace.outputs[value_point][0, index], rtol=1e-5, atol=1e-6)
        expected = 0.5 * per_prompt[0] + 0.5 * (per_prompt[1] + per_prompt[2]) / 2
        torch.testing.assert_close(keys[i], expected, rtol=1e-5, atol=1e-6)
