"""Do an edit's requests fit the workspace's model? Checked after the lock, before any model work.

Public API:
    template_prefix_tokens(workspace, tokenizer, config) -> int
    check_requests_fit(workspace, requests, config) -> int | None   the model's context, or None if unknown

The model's context comes from its config (``model.loading.context_length``: the config is read,
no weights), the tokens from its tokenizer alone. InputError (exit 2) names the record and the fix.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..config import EditConfig
from ..data.requests import EditRequest
from ..workspace.store import Workspace

#: tokens a sampled context template may take beyond its configured length (its ". " and the
#: re-tokenization of the decoded text)
TEMPLATE_SLACK = 4


def template_prefix_tokens(workspace: Workspace, tokenizer, config: EditConfig) -> int:
    """The tokens of the longest context-template prefix put before a request's prompt: exact
    for the templates stored in the workspace, else a bound (their length + ``TEMPLATE_SLACK``)."""
    from ..workspace.checkout import template_key

    stored = workspace.templates(template_key(config))
    if stored is not None:
        prefixes = [t.split("{}", 1)[0] for t in stored]
        return max((len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prefixes if p), default=0)
    return config.context_template_length + TEMPLATE_SLACK if config.context_template_count > 0 else 0


def check_requests_fit(workspace: Workspace, requests: Sequence[EditRequest], config: EditConfig) -> int | None:
    """InputError if a request's prompt, paraphrase or neighbour (with its target and the longest
    context template) is longer than the model's context; returns that context."""
    from ..data.prompt_lengths import check_prompt_lengths
    from ..model.loading import context_length, load_tokenizer, source_from_description

    source = source_from_description(workspace.model["source"])
    context = context_length(source)
    if context is None:
        return None
    tokenizer = load_tokenizer(source)
    check_prompt_lengths(requests, tokenizer, context, template_prefix_tokens(workspace, tokenizer, config))
    return context
