"""Memory a client can make the router hold with cheap requests (issue 17, item 10), measured with tracemalloc.

* **Feedback for unknown runs with large keys**: 100 ``PromptRouting.feedback`` calls for run ids never served,
  each with a 540 KB ``key`` (what fits a 1 MB request body), on the default in-memory state store. Each call that
  is refused (a key over the limit) is counted, not kept. Then 10,000 such calls with keys within the limit.
* **Long words through the static prompt encoder**: 200 prompts, each with one distinct 500 KB word, through a
  :class:`~langchain_energyrouter.prompt.encoders.StaticEmbeddingEncoder` (a 30-word WordPiece vocabulary and a
  random table: the word cache does not depend on the vocabulary).

Prints the Python heap still held after each (MB), and how long the 200 prompts took. Run:
.venv/bin/python benchmarks/bench_memory_bounds.py
"""

from __future__ import annotations

import gc
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

from langchain_energyrouter.prompt.encoders import HashingEncoder, StaticEmbeddingEncoder
from langchain_energyrouter.prompt.routing import PromptRouting
from langchain_energyrouter.state import MemoryStateStore

MB = 1024 * 1024


def held_mb(work: Callable[[], object]) -> float:
    """Python heap held after ``work()`` returns (its result dropped), MB."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    work()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / MB


def unknown_feedback(posts: int = 100, key_chars: int = 540_000) -> tuple[float, int]:
    models = ("tiny-a", "tiny-b")
    store = MemoryStateStore()
    routing = PromptRouting(models, None, store, prior_accuracy=dict.fromkeys(models, 0.5), encoder=HashingEncoder(256))
    refused = 0

    def post() -> None:
        nonlocal refused
        for i in range(posts):
            key = f"{i:06d}" + "k" * key_chars
            try:
                routing.feedback(f"never-served-{i}", 0.0, key=key)
            except ValueError:
                refused += 1

    mb = held_mb(post)
    return mb, refused


def long_words(prompts: int = 200, word_chars: int = 500_000) -> tuple[float, float]:
    import tokenizers

    words = "what is plus minus add and the of a to hello say write poem about convert meters feet".split()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "?", ".", *words, "##s", "##ing"]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.txt").write_text("\n".join(vocab) + "\n")
        tokenizer = tokenizers.BertWordPieceTokenizer(str(Path(tmp) / "vocab.txt"), lowercase=True)
    table = np.random.default_rng(0).standard_normal((len(vocab), 16)).astype(np.float32)
    encoder = StaticEmbeddingEncoder(table, tokenizer, "bench-static-16")
    elapsed_s = 0.0

    def encode() -> None:
        nonlocal elapsed_s
        start = time.perf_counter()
        for i in range(prompts):
            encoder.encode(f"say hello to {i:06d}{'x' * word_chars} please")
        elapsed_s = time.perf_counter() - start

    mb = held_mb(encode)
    return mb, elapsed_s


def main() -> None:
    mb, refused = unknown_feedback()
    print(f"feedback, 100 unknown run ids with 540 KB keys: {mb:.1f} MB held ({refused} refused)")
    mb, refused = unknown_feedback(10_000, 250)
    print(f"feedback, 10,000 unknown run ids with 256-character keys: {mb:.1f} MB held ({refused} refused)")
    mb, elapsed_s = long_words()
    print(f"static encoder, 200 prompts with one 500 KB word: {mb:.1f} MB held ({elapsed_s:.2f} s)")


if __name__ == "__main__":
    main()
