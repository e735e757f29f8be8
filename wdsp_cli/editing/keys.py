"""Keys k (inputs of an edited MLP output projection) and current values at the subject.

Public API:
    key_weights(n_templates) -> [n] weights averaging keys over context templates
    compute_keys(model, tokenizer, requests, context_templates, key_module, value_point)
        -> (keys [B, d_in] float32, values [B, d] float32)

MEMIT's ``compute_ks``: a request's key is the input of W_l at the subject's last token,
averaged over context templates by group: the bare "{}" counts 1/2, the generated
templates share the other 1/2 (k = 0.5 k_bare + 0.5 mean_j k_j). ``values`` is the
output of ``value_point`` (the z-layer block for MEMIT, its MLP output for PMET) at the
subject's last token of the bare prompt: the value the residual R = Z - values is
measured from. Each row is fed up to its subject's last token only (attention is causal, so
later tokens change nothing there), in groups of similar length, each pass stopped after
``value_point``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..data.requests import EditRequest
from ..model.hooks import hooks, run
from ..optimisation.prompts import fill, length_groups, pad_rows, subject_last_token


def key_weights(n_templates: int) -> torch.Tensor:
    if n_templates == 1:
        return torch.ones(1)
    rest = torch.full((n_templates - 1,), 0.5 / (n_templates - 1))
    return torch.cat([torch.tensor([0.5]), rest])


@torch.no_grad()
def compute_keys(model, tokenizer, requests: Sequence[EditRequest], context_templates: Sequence[str],
                 key_module: str, value_point: str) -> tuple[torch.Tensor, torch.Tensor]:
    rows = []
    for request in requests:
        for template in context_templates:
            text, span = fill(template, request.prompt, request.subject)
            ids, index = subject_last_token(tokenizer, text, span)
            rows.append(ids[: index + 1])
    batch = pad_rows(rows, tokenizer.pad_token_id)
    device = next(model.parameters()).device
    keys, values = None, None
    for group in length_groups(batch.lengths):
        width = int(batch.lengths[group].max())
        with hooks(model, inputs=[key_module], outputs=[value_point], stop_after=value_point) as trace:
            run(model, input_ids=batch.input_ids[group, :width].to(device),
                attention_mask=batch.attention_mask[group, :width].to(device), use_cache=False)
        inputs, outputs = trace.inputs[key_module], trace.outputs[value_point]  # on their layers' devices
        if keys is None:
            keys = inputs.new_zeros(len(rows), inputs.shape[-1], dtype=torch.float32)
            values = outputs.new_zeros(len(rows), outputs.shape[-1], dtype=torch.float32)
        last = batch.lengths[group] - 1
        keys[group.to(keys.device)] = inputs[torch.arange(len(group), device=inputs.device),
                                             last.to(inputs.device)].float()
        values[group.to(values.device)] = outputs[torch.arange(len(group), device=outputs.device),
                                                  last.to(outputs.device)].float()
    n = len(context_templates)
    weights = key_weights(n).to(keys.device)
    keys = (keys.view(len(requests), n, -1) * weights[None, :, None]).sum(1)
    values = values.view(len(requests), n, -1)[:, 0]
    return keys, values
