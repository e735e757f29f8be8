"""Streaming second-moment statistics of the keys of the edited MLP output projections.

Responsibility: C_l = E[k k^T] for each requested layer l, where k in R^{d_in} is the *input* of
the MLP output projection W_l (``template_for(model).mlp_out_name(l)``) at every non-pad token of a
corpus (method.md section 1 step 4; MEMIT's ``layer_stats``). It is the *uncentered* second
moment, not a covariance in the statistical sense; MEMIT and PMET call it the covariance:

    C_l = (1 / N) * sum_{t=1..N} k_t k_t^T        [d_in, d_in],  N = number of non-pad tokens.

The statistics belong to the base model; compute them once, store them with what produced them
(``save_layer_statistics``) and reuse them.

Public API
    ``LayerStatistics``           layer, module, second_moment [d_in, d_in], token_count, dtype, metadata
    ``SecondMomentSum``           partial sums (sum_t k_t k_t^T, N): ``add_``, ``merge``, ``mean``
    ``second_moment_from_sum(total, count) -> Tensor``   total / count
    ``merge_layer_statistics(a, b) -> LayerStatistics``  statistics of the union of two token sets
    ``accumulate_second_moment_sums(model, tokenizer, layers, texts, ...) -> dict[int, SecondMomentSum]``
    ``compute_covariance(model, tokenizer, layers, texts, ...) -> dict[int, LayerStatistics]``
    ``token_rows(tokenizer, texts, *, seq_len, max_tokens, max_samples) -> Iterator[list[int]]``
    ``length_sorted_batches(rows, batch_size, pad_id) -> Iterator[(input_ids, attention_mask)]``
    ``save_layer_statistics(path, stats)`` / ``load_layer_statistics(path) -> LayerStatistics``
    ``layer_statistics_chunks(stats) -> [header, data]``  the file's canonical bytes

How the corpus becomes forward passes
    Each document is tokenized alone with the tokenizer's default special tokens (a BOS where the
    tokenizer adds one by default, nothing otherwise) and split into rows of at most ``seq_len``
    tokens; every row gets the default prefix (e.g. BOS), so every row is a self-contained context,
    exactly as if that piece of text were fed to the model alone. Rows are gathered in a buffer of
    ``64 * batch_size``, sorted by length and cut into right-padded batches of ``batch_size`` rows
    (plus any further rows of the same length, up to ``batch_size * seq_len`` token slots):
    length-sorted bucketing, as MEMIT's ``length_collation``. Documents are *not* packed
    together into one row: under a plain causal mask a packed document would attend to its
    neighbours and change its keys, making the statistics depend on batching (block-diagonal masks
    would avoid that, but are model-specific and push attention off its fused kernels). Sorting
    keeps the padding small instead (WikiText-2 raw, SmolLM2 tokenizer, seq_len 256, batch 8: 1.7%
    of the token slots for the first 50k tokens, against 22% with a buffer of 4 batches), and pads
    never influence real tokens (right padding under a causal mask) and are never counted.

    One forward pass per batch records the inputs of all requested projections and stops right
    after the deepest one (``hooks(..., stop_after=...)``), so later layers and the LM head never
    run; it runs under ``torch.inference_mode`` on the model's device, optionally under
    ``torch.autocast(autocast_dtype)``. Keys are cast to ``accumulate_dtype`` (float32 by default,
    float64 on request) and summed as ``S += K^T K`` over the batch's B*T rows with the pads' rows
    set to zero (they add nothing; the count takes only real tokens). Counting from the CPU-side
    mask and zeroing instead of gathering keeps the loop free of device synchronisations.

Sums, not running means, are kept (``SecondMomentSum``) so that a data-parallel run can all-reduce
the sums and counts of its shards and divide once (``second_moment_from_sum``).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import itertools
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError, StatisticsError
from ..model.architectures import module_by_name, num_layers, template_for
from ..model.hooks import hooks, run

__all__ = [
    "FORMAT_NAME",
    "SCHEMA_VERSION",
    "LayerStatistics",
    "SecondMomentSum",
    "accumulate_second_moment_sums",
    "compute_covariance",
    "layer_statistics_chunks",
    "length_sorted_batches",
    "load_layer_statistics",
    "merge_layer_statistics",
    "save_layer_statistics",
    "second_moment_from_sum",
    "token_rows",
]

logger = logging.getLogger(__name__)

FORMAT_NAME = "wdsp-layer-statistics"
SCHEMA_VERSION = 1
TENSOR_NAME = "second_moment"
# Keys of a statistics file's metadata that describe the tensor itself; LayerStatistics.metadata
# must not use them.
_RESERVED_KEYS = ("format", "schema_version", "layer", "module", "token_count", "dtype")
_SORT_BUFFER_BATCHES = 64
_TOKENIZE_GROUP = 64

ProgressFn = Callable[[int, "int | None"], None]


# --------------------------------------------------------------------------------------------
# sums and means


def second_moment_from_sum(total: torch.Tensor, count: int) -> torch.Tensor:
    """The mean outer product ``total / count``: [d, d] -> [d, d], same dtype.

    ``total`` = sum_t k_t k_t^T over ``count`` tokens. StatisticsError if ``count`` < 1.
    """
    if count < 1:
        raise StatisticsError("no tokens were accumulated, so the second moment is undefined",
                              "use a corpus with text in it, or raise max_tokens / max_samples")
    return total / count


@dataclass
class SecondMomentSum:
    """Partial statistics of one layer: ``total`` = sum_t k_t k_t^T [d, d] and ``count`` = N.

    Sums of disjoint token sets add (``merge``; an all-reduce of ``total`` and ``count`` across
    processes is the same operation); ``mean()`` divides once at the end.
    """

    total: torch.Tensor
    count: int = 0

    @classmethod
    def zeros(cls, dim: int, *, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
        return cls(torch.zeros(dim, dim, dtype=dtype, device=device), 0)

    def add_(self, keys: torch.Tensor, count: int | None = None) -> SecondMomentSum:
        """Add the keys K [n, d] (any dtype; cast to ``total``'s): total += K^T K, count += n.

        ``count``: the number of real tokens among the n rows when the others (pads) are zero
        rows, which add nothing to K^T K; default n.
        """
        keys = keys.to(dtype=self.total.dtype, device=self.total.device)
        self.total.addmm_(keys.T, keys)
        self.count += int(keys.shape[0]) if count is None else int(count)
        return self

    def merge(self, other: SecondMomentSum) -> SecondMomentSum:
        """A new sum over both token sets (``self`` and ``other`` are unchanged)."""
        if self.total.shape != other.total.shape:
            raise StatisticsError(f"cannot merge statistics of shapes {tuple(self.total.shape)} and "
                                  f"{tuple(other.total.shape)}", "merge statistics of the same layer and model")
        total = self.total + other.total.to(dtype=self.total.dtype, device=self.total.device)
        return SecondMomentSum(total, self.count + other.count)

    def mean(self) -> torch.Tensor:
        """C = total / count [d, d]."""
        return second_moment_from_sum(self.total, self.count)


@dataclass
class LayerStatistics:
    """C_l = E[k k^T] of the input of layer ``layer``'s MLP output projection.

    ``second_moment``: [d_in, d_in], symmetric positive semi-definite, dtype ``dtype`` (the
    accumulation dtype's name, e.g. "float32"); ``token_count``: N, the non-pad tokens averaged
    over; ``metadata``: strings describing how it was made (``corpus``: the corpus identity as
    JSON, ``model``, ``seq_len``, ``created_at``, ...).
    """

    layer: int
    module: str
    second_moment: torch.Tensor
    token_count: int
    dtype: str
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.second_moment.shape[0])

    def to_sum(self) -> SecondMomentSum:
        """The equivalent partial sum (second_moment * token_count)."""
        return SecondMomentSum(self.second_moment * self.token_count, self.token_count)


def merge_layer_statistics(a: LayerStatistics, b: LayerStatistics) -> LayerStatistics:
    """Statistics of the union of two disjoint token sets of the same layer.

    C = (N_a C_a + N_b C_b) / (N_a + N_b), computed in float64 and returned in ``a.dtype``.
    Metadata entries that differ are kept as a JSON list ``[a's, b's]``.
    """
    if (a.layer, a.module) != (b.layer, b.module):
        raise StatisticsError(f"cannot merge statistics of {a.module} (layer {a.layer}) with {b.module} "
                              f"(layer {b.layer})", "merge statistics of the same layer")
    if a.second_moment.shape != b.second_moment.shape:
        raise StatisticsError(f"cannot merge statistics of shapes {tuple(a.second_moment.shape)} and "
                              f"{tuple(b.second_moment.shape)}", "merge statistics of the same model")
    n = a.token_count + b.token_count
    total = (a.second_moment.double() * a.token_count
             + b.second_moment.to(a.second_moment.device).double() * b.token_count)
    merged = second_moment_from_sum(total, n).to(a.second_moment.dtype)
    metadata = {}
    for key in sorted(set(a.metadata) | set(b.metadata)):
        va, vb = a.metadata.get(key), b.metadata.get(key)
        metadata[key] = va if va == vb else json.dumps([va, vb])
    return LayerStatistics(a.layer, a.module, merged, n, a.dtype, metadata)


# --------------------------------------------------------------------------------------------
# text -> token rows -> batches


def _special_affixes(tokenizer) -> tuple[list[int], list[int]]:
    """The ids the tokenizer adds by default before and after a text (e.g. ([bos], []))."""
    probe = "statistics of the keys"
    plain = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    full = list(tokenizer(probe)["input_ids"])
    for start in range(len(full) - len(plain) + 1):
        if full[start:start + len(plain)] == plain:
            return full[:start], full[start + len(plain):]
    logger.warning("cannot tell which special tokens the tokenizer adds; adding none")
    return [], []


def _bounded_texts(texts: Iterable[str], max_samples: int | None, counter: dict[str, int]) -> Iterator[str]:
    for text in texts:
        if max_samples is not None and counter["documents"] >= max_samples:
            return
        if not isinstance(text, str):
            raise InputError(f"corpus yielded a {type(text).__name__}, expected text",
                             "pass an iterable of strings or a Corpus from wdsp_cli.corpus.open_corpus")
        if not text or text.isspace():
            continue
        counter["documents"] += 1
        yield text


def token_rows(
    tokenizer,
    texts: Iterable[str],
    *,
    seq_len: int,
    max_tokens: int | None = None,
    max_samples: int | None = None,
    counter: dict[str, int] | None = None,
) -> Iterator[list[int]]:
    """Token id rows of at most ``seq_len`` ids, each a self-contained context.

    Each document (at most ``max_samples`` non-blank texts) is tokenized without special tokens
    and cut into pieces of ``seq_len - len(prefix) - len(suffix)`` ids; each piece gets the
    tokenizer's default prefix (e.g. BOS), the last piece its default suffix. The stream stops
    after exactly ``max_tokens`` ids (the last row cut short), counting prefix ids too: every id
    of every row is a token whose key is accumulated. ``counter`` (if given) receives
    ``documents`` and ``rows`` counts.
    """
    counter = counter if counter is not None else {}
    counter.setdefault("documents", 0)
    counter.setdefault("rows", 0)
    prefix, suffix = _special_affixes(tokenizer)
    body = seq_len - len(prefix) - len(suffix)
    if body < 1:
        raise InputError(f"seq_len {seq_len} leaves no room for text after the tokenizer's "
                         f"{len(prefix) + len(suffix)} special tokens", "raise seq_len (256 is usual)")
    remaining = max_tokens
    group: list[str] = []
    stream = _bounded_texts(texts, max_samples, counter)
    while True:
        group.clear()
        for text in stream:
            group.append(text)
            if len(group) == _TOKENIZE_GROUP:
                break
        if not group:
            return
        encoded = tokenizer(group, add_special_tokens=False, verbose=False)["input_ids"]
        for ids in encoded:
            if not ids:
                continue
            for start in range(0, len(ids), body):
                last = start + body >= len(ids)
                row = prefix + list(ids[start:start + body]) + (suffix if last else [])
                if remaining is not None:
                    row = row[:remaining]
                    remaining -= len(row)
                counter["rows"] += 1
                yield row
                if remaining == 0:
                    return


def length_sorted_batches(
    rows: Iterable[Sequence[int]],
    batch_size: int,
    pad_id: int,
    *,
    max_slots: int | None = None,
    buffer_batches: int = _SORT_BUFFER_BATCHES,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Right-padded batches of rows of similar length: (input_ids, attention_mask), both [B, T] long.

    Rows are read ``buffer_batches * batch_size`` at a time, sorted by length (longest first) and
    cut into batches of ``batch_size`` rows; T is the longest row of the batch. With ``max_slots``
    a batch also takes the following rows of exactly its width T (they add no padding) while
    ``B * T <= max_slots``, so that runs of short rows (headings, one-line documents) make a few
    full forwards instead of many tiny ones. (Taking rows of other lengths as well cuts the
    number of forwards further but adds padding: WikiText-2, seq_len 256, 8 rows, 2048 slots:
    5.4% padding instead of 1.7%, which costs more than the forwards it saves on a CPU.) The
    same rows give the same batches, whatever consumes them.
    """
    buffer: list[Sequence[int]] = []

    def flush() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        buffer.sort(key=len, reverse=True)
        start = 0
        while start < len(buffer):
            width = len(buffer[start])
            end = min(start + batch_size, len(buffer))
            if max_slots is not None:
                while end < len(buffer) and len(buffer[end]) == width and (end - start + 1) * width <= max_slots:
                    end += 1
            chunk = buffer[start:end]
            start = end
            ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, row in enumerate(chunk):
                ids[i, :len(row)] = torch.as_tensor(row, dtype=torch.long)
                mask[i, :len(row)] = 1
            yield ids, mask
        buffer.clear()

    for row in rows:
        buffer.append(row)
        if len(buffer) >= buffer_batches * batch_size:
            yield from flush()
    if buffer:
        yield from flush()


# --------------------------------------------------------------------------------------------
# the accumulation


def _input_device(model: torch.nn.Module) -> torch.device:
    """Where input ids go: the input embedding's device (the first parameter's as a fallback)."""
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    weight = getattr(embeddings, "weight", None)
    if isinstance(weight, torch.Tensor):
        return weight.device
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _pad_id(tokenizer) -> int:
    for value in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if value is not None:
            return int(value)
    return 0  # any id will do: pads are masked out and never counted


def _check_args(model, layers: Sequence[int], seq_len: int, batch_size: int,
                max_tokens: int | None, max_samples: int | None, accumulate_dtype: torch.dtype) -> list[int]:
    unique = sorted({int(layer) for layer in layers})
    if not unique:
        raise InputError("no layers given for statistics", "pass the edited layers, e.g. layers=[3, 4, 5]")
    total = num_layers(model)
    bad = [layer for layer in unique if not 0 <= layer < total]
    if bad:
        raise InputError(f"layers {bad} out of range: the model has layers 0..{total - 1}",
                         "choose layers that exist in this model")
    if seq_len < 2:
        raise InputError(f"seq_len must be at least 2, got {seq_len}", "use seq_len=256")
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}", "use batch_size=8")
    for name, value in (("max_tokens", max_tokens), ("max_samples", max_samples)):
        if value is not None and value < 1:
            raise InputError(f"{name} must be at least 1 (or None for no bound), got {value}",
                             f"pass a positive {name} or leave it out")
    if not accumulate_dtype.is_floating_point:
        raise InputError(f"accumulate_dtype must be a floating dtype, got {accumulate_dtype}",
                         "use torch.float32 or torch.float64")
    return unique


def accumulate_second_moment_sums(
    model: torch.nn.Module,
    tokenizer,
    layers: Sequence[int],
    texts: Iterable[str],
    *,
    max_tokens: int | None = None,
    max_samples: int | None = None,
    seq_len: int = 256,
    batch_size: int = 8,
    accumulate_dtype: torch.dtype = torch.float32,
    autocast_dtype: torch.dtype | None = None,
    progress: ProgressFn | None = None,
    run_info: dict[str, Any] | None = None,
) -> dict[int, SecondMomentSum]:
    """Sums S_l = sum_t k_t k_t^T [d_in, d_in] and counts N over the texts, for each layer in ``layers``.

    The building block of ``compute_covariance`` (see there for the arguments); returns sums on
    the device of each layer's keys, keyed by layer in increasing order. ``run_info`` (if given) receives
    ``documents``, ``rows``, ``tokens``, ``padded_slots`` and ``seconds``.
    """
    layer_list = _check_args(model, layers, seq_len, batch_size, max_tokens, max_samples, accumulate_dtype)
    template = template_for(model)
    modules = {layer: template.mlp_out_name(layer) for layer in layer_list}
    for name in modules.values():
        module_by_name(model, name)  # a ModelError now rather than mid-run
    device = _input_device(model)
    counter: dict[str, int] = {}
    rows = token_rows(tokenizer, texts, seq_len=seq_len, max_tokens=max_tokens,
                      max_samples=max_samples, counter=counter)
    batches = length_sorted_batches(rows, batch_size, _pad_id(tokenizer), max_slots=batch_size * seq_len)
    sums: dict[int, SecondMomentSum] = {}
    tokens = padded = 0
    autocast = (torch.autocast(device_type=device.type, dtype=autocast_dtype) if autocast_dtype is not None
                else contextlib.nullcontext())
    was_training = model.training
    start = time.perf_counter()
    logger.info("second-moment statistics of %s: seq_len %d, batch %d, %s accumulation",
                ", ".join(modules.values()), seq_len, batch_size, accumulate_dtype)
    model.eval()
    try:
        # hooks are held only around each forward: a lazy corpus (model samples) runs the same
        # model to produce the next texts, and must not see them
        with torch.inference_mode():
            for input_ids, attention_mask in batches:
                # counts come from the CPU mask, and pads are zeroed rather than gathered out, so
                # the loop never waits for an accelerator: tokenizing the next batch overlaps this one
                n = int(attention_mask.sum())
                has_pads = n != attention_mask.numel()
                input_ids = input_ids.to(device)
                attention_mask = attention_mask.to(device)
                with autocast, hooks(model, inputs=list(modules.values()),
                                     stop_after=modules[layer_list[-1]]) as trace:
                    run(model, input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
                pads = ~attention_mask.bool().unsqueeze(-1) if has_pads else None  # [B, T, 1]
                for layer, name in modules.items():
                    keys = trace.inputs.get(name)  # [B, T, d_in]
                    if keys is None:
                        raise StatisticsError(f"module {name} did not run during the forward pass",
                                              "the model's layout differs from its template in "
                                              "wdsp_cli/architectures.py")
                    if pads is not None:  # masked_fill, not a product: a pad's key may be inf/NaN
                        keys = keys.masked_fill(pads.to(keys.device), 0)
                    keys = keys.reshape(-1, keys.shape[-1])
                    if layer not in sums:  # on the keys' device: layers may sit on different devices
                        sums[layer] = SecondMomentSum.zeros(keys.shape[-1], dtype=accumulate_dtype,
                                                            device=keys.device)
                    sums[layer].add_(keys, count=n)
                trace.inputs.clear()
                tokens += n
                padded += attention_mask.numel()
                if progress is not None:
                    progress(tokens, max_tokens)
    finally:
        model.train(was_training)
    seconds = time.perf_counter() - start
    if tokens == 0:
        raise StatisticsError("the corpus produced no tokens, so no statistics can be computed",
                              "use a corpus with non-blank text in it")
    logger.info("accumulated %d tokens (%d documents, %d rows, %.1f%% padding) in %.1f s, %.0f tokens/s",
                tokens, counter.get("documents", 0), counter.get("rows", 0),
                100.0 * (padded - tokens) / max(padded, 1), seconds, tokens / max(seconds, 1e-9))
    if run_info is not None:
        run_info.update(documents=counter.get("documents", 0), rows=counter.get("rows", 0), tokens=tokens,
                        padded_slots=padded, seconds=seconds)
    return sums


def _stringify(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def compute_covariance(
    model: torch.nn.Module,
    tokenizer,
    layers: Sequence[int],
    texts: Iterable[str],
    *,
    max_tokens: int | None = None,
    max_samples: int | None = None,
    seq_len: int = 256,
    batch_size: int = 8,
    accumulate_dtype: torch.dtype = torch.float32,
    autocast_dtype: torch.dtype | None = None,
    progress: ProgressFn | None = None,
    metadata: Mapping[str, Any] | None = None,
    data_parallel: bool = False,
) -> dict[int, LayerStatistics]:
    """C_l = (1/N) sum_t k_t k_t^T [d_in, d_in] for each l in ``layers``, over the texts' non-pad tokens.

    ``k_t``: input of ``template_for(model).mlp_out_name(l)`` at token t; N: tokens accumulated.
    ``texts``: any iterable of strings, or a ``Corpus`` (its identity is then recorded as
    metadata "corpus"). Bounds: ``max_samples`` documents and/or exactly ``max_tokens`` tokens
    (None: the whole corpus). Documents are split into rows of at most ``seq_len`` tokens and run
    length-sorted, ``batch_size`` rows at a time (more when they are short and of one length; never
    over ``batch_size * seq_len`` token slots; module docstring); ``batch_size`` changes speed and
    memory, not the result. ``accumulate_dtype``:
    float32 (MEMIT's choice) or float64; ``autocast_dtype`` (e.g. torch.bfloat16) runs the
    forward under ``torch.autocast`` while still accumulating in ``accumulate_dtype``.
    ``progress(tokens_done, max_tokens)`` is called after every batch. ``metadata``: extra
    entries (e.g. ``model``: the model fingerprint), stringified (JSON for non-strings).

    ``data_parallel``: run as one process of an initialised ``torch.distributed`` group (e.g.
    under ``accelerate launch`` or ``torchrun``): this process reads every world-th document from
    its rank on and up to its share of ``max_tokens`` and ``max_samples``; the sums and counts are
    all-reduced, so every process returns the statistics of the union. Without token or sample
    bounds that union is the whole corpus, as in one process (tested); with bounds it is each
    shard's first tokens rather than the corpus's first tokens.

    Returns {layer: LayerStatistics} with ``second_moment`` on the CPU in ``accumulate_dtype``.
    Runs under ``torch.inference_mode``; the model is left as it was (training flag included).
    """
    identity = getattr(texts, "identity", None)
    stream = texts.texts() if callable(getattr(texts, "texts", None)) else texts
    info: dict[str, Any] = {}
    rank, world = _process_group() if data_parallel else (0, 1)
    if world > 1:
        stream = itertools.islice(stream, rank, None, world)
    sums = accumulate_second_moment_sums(
        model, tokenizer, layers, stream, max_tokens=_share(max_tokens, rank, world),
        max_samples=_share(max_samples, rank, world), seq_len=seq_len, batch_size=batch_size,
        accumulate_dtype=accumulate_dtype, autocast_dtype=autocast_dtype, progress=progress, run_info=info)
    if world > 1:
        sums = _all_reduce(sums)
        info["processes"] = world
    template = template_for(model)
    common = _run_metadata(model, identity, seq_len=seq_len, max_tokens=max_tokens, max_samples=max_samples,
                           accumulate_dtype=accumulate_dtype, autocast_dtype=autocast_dtype, info=info)
    for key, value in (metadata or {}).items():
        if key in _RESERVED_KEYS:
            raise InputError(f"metadata key {key!r} is reserved", f"rename it; reserved: {', '.join(_RESERVED_KEYS)}")
        common[key] = _stringify(value)
    dtype_name = str(accumulate_dtype).removeprefix("torch.")
    return {
        layer: LayerStatistics(
            layer=layer,
            module=template.mlp_out_name(layer),
            second_moment=partial.mean().cpu(),
            token_count=partial.count,
            dtype=dtype_name,
            metadata=dict(common),
        )
        for layer, partial in sums.items()
    }


def _process_group() -> tuple[int, int]:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise StatisticsError("data_parallel statistics need an initialised torch.distributed process group",
                              "run under `accelerate launch` or `torchrun`, or drop data_parallel")
    return dist.get_rank(), dist.get_world_size()


def _share(total: int | None, rank: int, world: int) -> int | None:
    """This rank's part of a budget split as evenly as possible (the first ranks take the remainder)."""
    if total is None:
        return None
    return total // world + (1 if rank < total % world else 0)


def _all_reduce(sums: dict[int, SecondMomentSum]) -> dict[int, SecondMomentSum]:
    """Sum every rank's (S_l, N) in place; each rank gets the totals."""
    import torch.distributed as dist

    for partial in sums.values():
        dist.all_reduce(partial.total)
        count = torch.tensor([partial.count], dtype=torch.float64, device=partial.total.device)
        dist.all_reduce(count)
        partial.count = int(count.item())
    return sums


def _run_metadata(model, identity, *, seq_len, max_tokens, max_samples, accumulate_dtype, autocast_dtype,
                  info) -> dict[str, str]:
    import transformers

    from .. import __version__

    config = getattr(model, "config", None)
    meta: dict[str, Any] = {
        "corpus": identity if identity is not None else {"kind": "iterable"},
        "model": getattr(config, "_name_or_path", "") or type(model).__name__,
        "model_type": getattr(config, "model_type", ""),
        "model_dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "seq_len": seq_len,
        "max_tokens": max_tokens,
        "max_samples": max_samples,
        "documents": info.get("documents"),
        "rows": info.get("rows"),
        "batching": "length-sorted rows, right padding, one document per row",
        "autocast_dtype": str(autocast_dtype).removeprefix("torch.") if autocast_dtype is not None else None,
        "processes": info.get("processes", 1),
        "accumulate_dtype": str(accumulate_dtype).removeprefix("torch."),
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "wdsp_version": __version__,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
    }
    return {key: _stringify(value) for key, value in meta.items()}


# --------------------------------------------------------------------------------------------
# storage


def layer_statistics_chunks(stats: LayerStatistics) -> list:
    """``stats`` as a safetensors file (header, data): the tensor ``second_moment`` [d_in, d_in]
    and string metadata ``format``, ``schema_version``, ``layer``, ``module``, ``token_count``,
    ``dtype`` and every entry of ``stats.metadata``, in a canonical order (the same statistics
    give the same bytes; ``files.tensorfile``)."""
    from ..files.tensorfile import tensor_file_chunks

    clash = sorted(set(stats.metadata) & set(_RESERVED_KEYS))
    if clash:
        raise StatisticsError(f"statistics metadata uses reserved keys {clash}", "rename those entries")
    tensor = stats.second_moment.detach().to("cpu").contiguous()
    if tensor.ndim != 2 or tensor.shape[0] != tensor.shape[1]:
        raise StatisticsError(f"second_moment must be square [d, d], got {tuple(tensor.shape)}",
                              "pass the statistics returned by compute_covariance")
    header = {key: _stringify(value) for key, value in stats.metadata.items()}
    header.update(format=FORMAT_NAME, schema_version=str(SCHEMA_VERSION), layer=str(stats.layer),
                  module=stats.module, token_count=str(stats.token_count), dtype=stats.dtype)
    return tensor_file_chunks({TENSOR_NAME: tensor}, header)


def save_layer_statistics(path: str | Path, stats: LayerStatistics) -> Path:
    """Write ``stats`` to one safetensors file (``layer_statistics_chunks``), atomically; returns
    the path. A crash leaves the old file or the new one, never a torn one (``files.atomic``).
    In a workspace, ``Workspace.save_statistics`` calls this."""
    from ..files.atomic import atomic_write_bytes

    path = Path(path)
    chunks = layer_statistics_chunks(stats)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, chunks)
    return path


_RECOMPUTE_HINT = "delete the file and compute the statistics again (wdsp covariance)"


def load_layer_statistics(path: str | Path, *, device: torch.device | str = "cpu") -> LayerStatistics:
    """Read statistics written by ``save_layer_statistics``; StatisticsError if missing or corrupt.

    Checks the format name and schema version, the tensor (square, dtype as recorded, finite) and
    the recorded layer and token count.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise StatisticsError(f"statistics file {path} not found",
                              "compute the statistics for this layer first (wdsp covariance)")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as handle:
            header = dict(handle.metadata() or {})
            if TENSOR_NAME not in handle.keys():
                raise StatisticsError(f"statistics file {path} has no tensor {TENSOR_NAME!r}", _RECOMPUTE_HINT)
            tensor = handle.get_tensor(TENSOR_NAME)
    except StatisticsError:
        raise
    except Exception as exc:  # SafetensorError, OSError, JSON errors in a torn header...
        raise StatisticsError(f"statistics file {path} is unreadable or corrupt: {type(exc).__name__}: {exc}",
                              _RECOMPUTE_HINT) from exc
    if header.get("format") != FORMAT_NAME:
        raise StatisticsError(f"{path} is not a wdsp statistics file (format {header.get('format')!r})",
                              _RECOMPUTE_HINT)
    try:
        version = int(header.get("schema_version", ""))
        layer = int(header["layer"])
        token_count = int(header["token_count"])
        module = header["module"]
        dtype = header["dtype"]
    except (KeyError, ValueError) as exc:
        raise StatisticsError(f"statistics file {path} has incomplete metadata ({exc})", _RECOMPUTE_HINT) from exc
    if version > SCHEMA_VERSION:
        raise StatisticsError(f"statistics file {path} has schema version {version}, newer than this wdsp "
                              f"({SCHEMA_VERSION})", "upgrade wdsp, or recompute the statistics")
    if tensor.ndim != 2 or tensor.shape[0] != tensor.shape[1]:
        raise StatisticsError(f"statistics file {path}: second_moment has shape {tuple(tensor.shape)}, not [d, d]",
                              _RECOMPUTE_HINT)
    if str(tensor.dtype).removeprefix("torch.") != dtype:
        raise StatisticsError(f"statistics file {path}: tensor dtype {tensor.dtype} but metadata says {dtype}",
                              _RECOMPUTE_HINT)
    if token_count < 1 or not bool(torch.isfinite(tensor).all()):
        raise StatisticsError(f"statistics file {path} holds no tokens or non-finite values", _RECOMPUTE_HINT)
    metadata = {key: value for key, value in header.items() if key not in _RESERVED_KEYS}
    return LayerStatistics(layer, module, tensor, token_count, dtype, metadata)
