"""Prompt features: the hashing encoder, scalar features, the feature space, and the distilled static encoder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from langchain_energyrouter.prompt import encoders
from langchain_energyrouter.prompt.encoders import (
    HashingEncoder,
    StaticEmbeddingEncoder,
    distill_static_table,
    load_encoder,
)
from langchain_energyrouter.prompt.features import SCALAR_FEATURES, FeatureSpace, scalar_features


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_hashing_is_unit_length_and_puts_similar_prompts_closer() -> None:
    enc = HashingEncoder(512)
    a, b, c = (enc.encode(t) for t in ("What is 12 plus 30?", "What is 7 plus 5?", "Write a poem about autumn."))
    assert a.dtype == np.float32 and a.shape == (512,)
    assert np.linalg.norm(a) == pytest.approx(1.0, abs=1e-5)
    assert cosine(a, b) > cosine(a, c) + 0.2
    assert not enc.encode("").any()


def test_hashing_is_the_same_in_another_process() -> None:
    code = (
        "from langchain_energyrouter.prompt.encoders import HashingEncoder; "
        "print(HashingEncoder(64).encode('Add 3 and 4.').tolist())"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    np.testing.assert_allclose(json.loads(out), HashingEncoder(64).encode("Add 3 and 4."), rtol=1e-6)


def test_scalar_features() -> None:
    log_tokens, digit_share, longest = scalar_features("Add 12345 and 7.", 9)
    assert log_tokens == pytest.approx(np.log1p(9) / 8)
    assert digit_share == pytest.approx(6 / 16) and longest == pytest.approx(0.5)
    assert scalar_features("hi there", None)[0] == pytest.approx(np.log1p(2) / 8)  # counted as words


def test_feature_space_layout() -> None:
    space = FeatureSpace(HashingEncoder(32), ["math", "chat"])
    assert space.dim == 32 + len(SCALAR_FEATURES) + 2
    x = space.vector("What is 2 plus 2?", 8, "chat")
    assert x[-2:].tolist() == [0.0, 1.0]
    assert space.vector("What is 2 plus 2?", 8, "unknown")[-2:].tolist() == [0.0, 0.0]
    assert space.matrix([("a", 1, None), ("b", 2, "math")]).shape == (2, space.dim)


def test_unknown_encoder_names_the_choices() -> None:
    with pytest.raises(ValueError, match="hashing"):
        load_encoder("word2vec")
    assert load_encoder("hashing-128").name == "hashing-128"


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (random-weight) 1-layer BERT with a 40-word WordPiece vocabulary, saved like the packaged MiniLM."""
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    root = tmp_path_factory.mktemp("tiny-bert")
    words = "what is plus minus add and the of a to hello say write poem about convert meters feet".split()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "?", ".", *list("0123456789"), *words, "##s", "##ing"]
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = tokenizers.BertWordPieceTokenizer(str(root / "vocab.txt"), lowercase=True)
    tokenizer.save(str(root / "tokenizer.json"))
    (root / "tokenizer_config.json").write_text(json.dumps({"cls_token": "[CLS]", "sep_token": "[SEP]"}))
    config = transformers.BertConfig(
        vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    transformers.BertModel(config).save_pretrained(str(root))
    return root


def test_distilled_static_encoder_is_cached_and_encodes(
    tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(encoders, "_minilm_dir", lambda: tiny_bert)
    calls: list[Path] = []
    real = encoders.distill_static_table

    def counting(source: Path, out: Path, *, dims: int = 256) -> None:
        calls.append(out)
        real(source, out, dims=dims)

    monkeypatch.setattr(encoders, "distill_static_table", counting)
    enc = StaticEmbeddingEncoder.load(cache_dir=tmp_path, dims=8)
    again = StaticEmbeddingEncoder.load(cache_dir=tmp_path, dims=8)
    assert len(calls) == 1  # the second load reads the cache
    assert enc.name == "minilm-static-8" and enc.dim == 8
    v = enc.encode("What is 3 plus 4?")
    assert v.shape == (8,) and np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_array_equal(v, again.encode("What is 3 plus 4?"))
    # the word cache gives the same ids as the tokenizer on the whole text
    whole = enc._tokenizer.encode("say hello, write a poem.", add_special_tokens=False).ids
    cached = [i for w in ("say", "hello", ",", "write", "a", "poem", ".") for i in enc._ids(w)]
    assert whole == cached
    assert not enc.encode("").any()


def test_the_static_word_cache_is_bounded_in_words_and_word_length(tiny_bert: Path) -> None:
    tokenizers = pytest.importorskip("tokenizers")
    vocab = (tiny_bert / "vocab.txt").read_text().split()
    table = np.random.default_rng(0).standard_normal((len(vocab), 8)).astype(np.float32)
    enc = StaticEmbeddingEncoder(table, tokenizers.Tokenizer.from_file(str(tiny_bert / "tokenizer.json")), "t-8",
                                 word_cache_size=16)  # fmt: skip
    long_word = "x" * 10_000
    first = enc.encode(f"say hello to {long_word}")
    np.testing.assert_array_equal(first, enc.encode(f"say hello to {long_word}"))  # same vector uncached
    for i in range(50):
        enc.encode(f"say hello to {i}{long_word} and word{i}")
    assert enc._words and max(len(word) for word in enc._words) <= enc.max_cached_word_chars == 64
    assert len(enc._words) <= 16
    assert enc._ids(long_word) == tuple(enc._tokenizer.encode(long_word, add_special_tokens=False).ids)
    with pytest.raises(ValueError, match=r"word_cache_size=0"):
        StaticEmbeddingEncoder(table, enc._tokenizer, "t-8", word_cache_size=0)


def test_distillation_reduces_to_the_requested_dims(tiny_bert: Path, tmp_path: Path) -> None:
    distill_static_table(tiny_bert, tmp_path, dims=4)
    table = np.load(tmp_path / "table.npy")
    assert table.shape == (len((tiny_bert / "vocab.txt").read_text().split()), 4)
    assert np.isfinite(table).all() and (tmp_path / "tokenizer.json").is_file()


def test_features_import_stays_light() -> None:
    code = (
        "import sys, langchain_energyrouter.prompt.features; "
        "bad = {'pandas', 'statsmodels', 'scipy', 'torch', 'transformers', 'tokenizers', 'pynvml'} & set(sys.modules); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_router_import_loads_no_prompt_features() -> None:
    """Prompt features are loaded only when a router is configured to use them (numpy, tokenizers, encoders)."""
    code = (
        "import sys, langchain_energyrouter.router; "
        "bad = {'numpy', 'tokenizers', 'langchain_energyrouter.prompt.features', "
        "'langchain_energyrouter.prompt.encoders', 'langchain_energyrouter.prompt.predictor', "
        "'langchain_energyrouter.prompt.bandit', 'langchain_energyrouter.prompt.routing'} "
        "& set(sys.modules); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
