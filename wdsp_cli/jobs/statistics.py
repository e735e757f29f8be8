"""Covariance statistics kept in a workspace: compute once per layer, reuse, never recompute silently.

Public API:
    MODEL_SAMPLES                "model-samples": the offline corpus (text the base model writes)
                                 ("builtin": text the default model wrote once, shipped: data.corpus.builtin_corpus)
    open_statistics_corpus(spec, model, tokenizer, fingerprint) -> Corpus
    plan_statistics(workspace, layers, identity, tokens, force) -> (to_compute, reused)
    compute_statistics(workspace, layers, corpus_spec, tokens, force, progress) -> report dict
    load_second_moments(workspace, layers) -> {layer: C_l}
    covariance_command(workspace, layers) -> str   the `wdsp covariance` to paste, matching the stored statistics
    load_derived(workspace, name, layer, params, compute)  a method's per-layer state, computed once and kept

A layer's stored statistics *match* a request when they were made from the same corpus identity
(``corpus.Corpus.identity``) over the same token budget, on this workspace's base model.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Sequence

from ..errors import StatisticsError
from ..workspace.store import Workspace

MODEL_SAMPLES = "model-samples"
MODEL_SAMPLE_TEXTS = 2000  # generated lazily: a token budget only generates what it consumes


def open_statistics_corpus(spec: str, model, tokenizer, fingerprint: str, text_field: str = "text"):
    """The corpus named by ``spec``; for model-samples, ``model`` may be None to get its identity
    only (texts are generated lazily, when iterated)."""
    from ..data.corpus import BUILTIN, builtin_corpus, model_samples_corpus, open_corpus

    if spec == BUILTIN:
        return builtin_corpus()
    if spec == MODEL_SAMPLES:
        return model_samples_corpus(model, tokenizer, MODEL_SAMPLE_TEXTS, seed=0, model_fingerprint=fingerprint)
    return open_corpus(spec, text_field=text_field)


def _normal(value) -> object:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def plan_statistics(workspace: Workspace, layers: Sequence[int], identity: dict, tokens: int,
                    force: bool) -> tuple[list[int], list[int]]:
    """(layers to compute, layers whose stored statistics match). Raises StatisticsError for a
    layer with statistics of another corpus or budget unless ``force``."""
    compute, reused = [], []
    for layer in layers:
        meta = workspace.statistics_metadata(layer)
        if meta is None:
            compute.append(layer)
            continue
        same = (_normal(json.loads(meta.get("corpus", "null"))) == _normal(identity)
                and meta.get("max_tokens") == str(tokens) and meta.get("model") == workspace.model["fingerprint"])
        if same:
            reused.append(layer)
        elif force:
            compute.append(layer)
        else:
            corpus = json.loads(meta.get("corpus", "{}"))
            raise StatisticsError(
                f"layer {layer} already has statistics from another corpus or token budget "
                f"({corpus.get('kind', '?')} {corpus.get('path', corpus.get('name', ''))}, {meta.get('token_count')} tokens)",
                hint="pass --force to replace them (edits made so far keep their diffs), or ask for the same "
                     "--corpus and --tokens")
    return compute, reused


def compute_statistics(workspace: Workspace, layers: Sequence[int], corpus_spec: str, tokens: int,
                       force: bool = False, progress: Callable[[int, int | None], None] | None = None,
                       base=None, text_field: str = "text", data_parallel: bool = False,
                       device: str | None = None, write: bool = True) -> dict:
    """Statistics of the base model for ``layers`` over ``tokens`` tokens of the corpus; stored
    per layer (each file written atomically as soon as the pass ends). Returns a report.
    ``data_parallel``: one process of a torch.distributed group (``covariance.compute_covariance``);
    the model goes to ``device`` (None: where ``wdsp init`` recorded it); only the process with ``write`` stores the files."""
    from ..statistics.covariance import compute_covariance
    from ..workspace.checkout import load_base

    if tokens < 1:
        raise StatisticsError(f"--tokens must be positive, got {tokens}", hint="e.g. --tokens 100000")
    fingerprint = workspace.model["fingerprint"]
    corpus = open_statistics_corpus(corpus_spec, None, None, fingerprint, text_field)  # checks a file early
    compute, reused = plan_statistics(workspace, layers, corpus.identity, tokens, force)
    report = {"layers": list(layers), "computed": compute, "reused": reused, "corpus": corpus.identity,
              "tokens": tokens, "seconds": 0.0}
    if not compute:
        return report
    model, tokenizer = base or load_base(workspace, device=device)
    if corpus_spec == MODEL_SAMPLES:
        corpus = open_statistics_corpus(corpus_spec, model, tokenizer, fingerprint)
    clock = time.perf_counter()
    stats = compute_covariance(model, tokenizer, compute, corpus, max_tokens=tokens, progress=progress,
                               metadata={"model": fingerprint}, data_parallel=data_parallel)
    for layer, layer_stats in stats.items() if write else ():
        workspace.save_statistics(layer_stats)
    report["seconds"] = round(time.perf_counter() - clock, 2)
    report["token_count"] = next(iter(stats.values())).token_count
    return report


def covariance_command(workspace: Workspace, layers: Sequence[int]) -> str:
    """The ``wdsp covariance`` command (to paste) for ``layers`` with the corpus and token budget
    of the statistics already in the workspace (the first layer that has some), so the new layers
    match the others; the defaults when there are none."""
    import shlex

    parts = ["wdsp", "covariance", "-w", str(workspace.root), "--layers", ",".join(str(l) for l in layers)]
    for layer in range(int(workspace.model.get("num_layers") or 0)):
        meta = workspace.statistics_metadata(layer)
        if not meta:
            continue
        try:
            corpus = json.loads(meta.get("corpus", "null")) or {}
        except ValueError:
            corpus = {}
        kind = corpus.get("kind")
        spec = kind if kind in (MODEL_SAMPLES, "builtin") else corpus.get("path") if kind != "hub" else \
            corpus.get("name", "") + (f":{corpus['config']}" if corpus.get("config") else "")
        if spec:
            parts += ["--corpus", spec]
            if corpus.get("text_field") not in (None, "text"):
                parts += ["--text-field", corpus["text_field"]]
        if str(meta.get("max_tokens", "")).isdigit():
            parts += ["--tokens", meta["max_tokens"]]
        break
    return " ".join(shlex.quote(part) for part in parts)


def load_second_moments(workspace: Workspace, layers: Sequence[int]) -> dict:
    """{layer: C_l [d_in, d_in]} for ``layers``; StatisticsError naming the missing ones."""
    from ..statistics.covariance import load_layer_statistics

    missing = [l for l in layers if not workspace.statistics_path(l).is_file()]
    if missing:
        raise StatisticsError(f"no covariance statistics for layer(s) {missing} in {workspace.root}",
                              hint="compute them first: " + covariance_command(workspace, layers))
    moments = {}
    for layer in layers:
        stats = load_layer_statistics(workspace.statistics_path(layer))
        if stats.metadata.get("model") != workspace.model["fingerprint"]:
            raise StatisticsError(f"the statistics of layer {layer} were computed on another model",
                                  hint="recompute them: " + covariance_command(workspace, layers) + " --force")
        moments[layer] = stats.second_moment
    return moments


def load_derived(workspace: Workspace, name: str, layer: int, params: dict[str, str], compute: Callable[[], object]):
    """A method's per-layer tensor derived from the statistics (AlphaEdit: "nullspace", P_l), kept in
    the workspace with ``params`` and the statistics' creation time; ``compute()`` makes it again (and
    it is stored again) when either differs (new statistics, another threshold) or the file is torn."""
    stats_meta = workspace.statistics_metadata(layer) or {}
    wanted = {**params, "statistics_created_at": stats_meta.get("created_at", "")}
    stored = workspace.derived_metadata(name, layer)  # None when absent or torn
    if stored is not None and {k: v for k, v in stored.items() if k in wanted} == wanted:
        with contextlib.suppress(Exception):  # a torn tensor behind a good header: computed again
            return workspace.derived(name, layer)
    value = compute()
    workspace.save_derived(name, layer, value, wanted)
    return value
