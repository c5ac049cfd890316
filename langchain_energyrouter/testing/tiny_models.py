"""Test helpers shared by this package's tests and its users' tests.

Like ``langchain_core.language_models.fake_chat_models``, this module is public:
it builds *real* but tiny Hugging Face chat models fully offline, so routers,
calibration runs and callbacks can be exercised end to end without downloading
anything. The models are randomly initialised Llamas (their text is gibberish)
with a byte-level BPE tokenizer trained on a few sentences; they are
deterministic for a given ``seed`` and different sizes give genuinely different
runtimes.

Example::

    from langchain_energyrouter.testing import tiny_chat_models

    models = tiny_chat_models()          # {"tiny-a": ..., "tiny-b": ...}
    models["tiny-a"].invoke("hello").content

``torch``, ``transformers`` and ``langchain_huggingface`` are imported inside the
functions, so importing this module stays cheap.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from langchain_huggingface import ChatHuggingFace
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

    from langchain_energyrouter.profile import EnergyProfile

__all__ = [
    "TINY_CHAT_TEMPLATE",
    "TINY_MODEL_SIZES",
    "build_tiny_chat_model",
    "build_tiny_model_and_tokenizer",
    "build_tiny_tokenizer",
    "save_tiny_model",
    "tiny_chat_models",
    "tiny_profile",
]

TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + eos_token }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)
"""Jinja chat template of the tiny models: ``<|role|>content</s>`` per turn."""

TINY_MODEL_SIZES: dict[str, dict[str, int]] = {
    "tiny-a": {"hidden_size": 32, "num_hidden_layers": 2},
    "tiny-b": {"hidden_size": 128, "num_hidden_layers": 4},
}
"""The standard pair returned by :func:`tiny_chat_models`: name -> size keywords."""

_SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>")

_TRAINING_TEXT = (
    "What is the capital of France? The capital of France is Paris.",
    "Explain how an energy aware router picks a language model for a prompt.",
    "Small models use less energy per token than large models do.",
    "Write a short poem about the sea, the wind and the stars.",
    "The quick brown fox jumps over the lazy dog. 0123456789",
    "Summarise the following text in one sentence, please.",
    "def add(a, b):\n    return a + b\n",
)


@functools.lru_cache(maxsize=4)
def _tiny_tokenizer_json(vocab_size: int) -> str:
    """Train the byte-level BPE once per process and return it serialised.

    A string (immutable) is cached rather than the tokenizer object, so every
    caller gets its own tokenizer and mutating one cannot leak into another.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_TRAINING_TEXT, trainer=trainer)
    return str(tokenizer.to_str())


def build_tiny_tokenizer(*, vocab_size: int = 300) -> PreTrainedTokenizerFast:
    """Build the tiny models' tokenizer: byte-level BPE with a chat template.

    Training happens once per process (cached); each call returns a new,
    independent tokenizer object.

    Args:
        vocab_size: target vocabulary size (at least 262: 256 bytes + specials).

    Returns:
        A ``PreTrainedTokenizerFast`` with ``<s>``/``</s>``/``<pad>`` tokens and
        :data:`TINY_CHAT_TEMPLATE`.
    """
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer.from_str(_tiny_tokenizer_json(vocab_size))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>"],
    )
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    return tokenizer


def _unprintable_token_ids(tokenizer: PreTrainedTokenizerFast) -> list[int]:
    """Ids of special tokens and of tokens that decode to control or partial UTF-8 bytes."""
    special = set(tokenizer.all_special_ids)
    suppressed = []
    for token_id in range(len(tokenizer)):
        text = str(tokenizer.decode([token_id]))
        if token_id in special or not text.isprintable() or "\ufffd" in text:
            suppressed.append(token_id)
    return suppressed


def build_tiny_model_and_tokenizer(
    name: str = "tiny-a",
    *,
    hidden_size: int = 32,
    num_hidden_layers: int = 2,
    num_attention_heads: int | None = None,
    seed: int = 0,
) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """Build a randomly initialised tiny Llama and its tokenizer, offline.

    The weights depend only on the size arguments and ``seed``; the global torch
    RNG state of the caller is left untouched. Special tokens (EOS included)
    and tokens that do not decode to printable text are never generated, so
    every generation has exactly ``max_new_tokens`` tokens (useful for runtime
    tests) and decodes to non-empty, printable text.

    Args:
        name: recorded as ``model.name_or_path``.
        hidden_size: width of the model.
        num_hidden_layers: depth of the model.
        num_attention_heads: defaults to 2 below width 128, else 4.
        seed: seed for the weight initialisation.

    Returns:
        ``(model, tokenizer)``, the model in eval mode on the CPU in float32.

    Raises:
        ValueError: if ``hidden_size`` is not divisible by the number of heads.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    heads = num_attention_heads or (2 if hidden_size < 128 else 4)
    if hidden_size <= 0 or num_hidden_layers <= 0 or hidden_size % heads:
        msg = (
            f"Tiny model {name!r}: hidden_size={hidden_size} must be positive and divisible "
            f"by num_attention_heads={heads}, and num_hidden_layers={num_hidden_layers} positive."
        )
        raise ValueError(msg)
    tokenizer = build_tiny_tokenizer()
    suppressed_ids = _unprintable_token_ids(tokenizer)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    # fork_rng keeps the caller's global RNG stream untouched by our seeding.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.eval()
    model.name_or_path = name
    generation_config = model.generation_config
    generation_config.bos_token_id = tokenizer.bos_token_id
    generation_config.eos_token_id = tokenizer.eos_token_id
    generation_config.pad_token_id = tokenizer.pad_token_id
    generation_config.suppress_tokens = suppressed_ids
    return model, tokenizer


def build_tiny_chat_model(
    name: str = "tiny-a",
    *,
    hidden_size: int = 32,
    num_hidden_layers: int = 2,
    max_new_tokens: int = 8,
    seed: int = 0,
) -> ChatHuggingFace:
    """Build a tiny, deterministic, offline ``ChatHuggingFace`` model.

    Args:
        name: model id reported by the chat model (``model_id``).
        hidden_size: width of the Llama.
        num_hidden_layers: depth of the Llama.
        max_new_tokens: tokens generated per call (always exactly this many).
        seed: seed for the weight initialisation.

    Returns:
        ``ChatHuggingFace`` over a local greedy ``text-generation`` pipeline.
    """
    from langchain_huggingface import ChatHuggingFace, HuggingFacePipeline
    from transformers import pipeline

    model, tokenizer = build_tiny_model_and_tokenizer(
        name, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers, seed=seed
    )
    pipe = pipeline(
        "text-generation",
        model=model,
        tokenizer=tokenizer,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        return_full_text=False,
    )
    llm = HuggingFacePipeline(pipeline=pipe, model_id=name)
    return ChatHuggingFace(llm=llm, tokenizer=tokenizer, model_id=name)


def tiny_chat_models(*, max_new_tokens: int = 8, seed: int = 0) -> dict[str, ChatHuggingFace]:
    """Build the standard pair of tiny models, ``tiny-a`` (small) and ``tiny-b`` (larger).

    Args:
        max_new_tokens: tokens generated per call by both models.
        seed: seed for the weight initialisation.

    Returns:
        Model name -> chat model, sizes from :data:`TINY_MODEL_SIZES`.
    """
    return {
        name: build_tiny_chat_model(name, max_new_tokens=max_new_tokens, seed=seed, **sizes)
        for name, sizes in TINY_MODEL_SIZES.items()
    }


def save_tiny_model(
    directory: str | Path,
    name: str = "tiny-a",
    *,
    hidden_size: int = 32,
    num_hidden_layers: int = 2,
    seed: int = 0,
) -> Path:
    """Save a tiny model and its tokenizer as a local Hugging Face directory.

    The directory loads with ``from_pretrained`` and with
    :func:`langchain_energyrouter.models.load_chat_model`.

    Args:
        directory: where to write (created if missing).
        name: recorded as ``model.name_or_path``.
        hidden_size: width of the Llama.
        num_hidden_layers: depth of the Llama.
        seed: seed for the weight initialisation.

    Returns:
        The directory, as a ``Path``.
    """
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    model, tokenizer = build_tiny_model_and_tokenizer(
        name, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers, seed=seed
    )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def tiny_profile() -> EnergyProfile:
    """A made-up profile for :func:`tiny_chat_models`: ``tiny-b`` is 5x costlier and twice as accurate.

    For examples and tests only; real profiles come from ``energyrouter calibrate``.
    """
    from langchain_energyrouter.profile import CostModel, DeviceInfo, EnergyProfile, ModelProfile

    def entry(scale: float, accuracy: float) -> ModelProfile:
        return ModelProfile(
            runtime=CostModel(intercept=0.005 * scale, input_tokens=1e-5 * scale, output_tokens=1e-3 * scale),
            energy=CostModel(intercept=0.05 * scale, input_tokens=1e-4 * scale, output_tokens=1e-2 * scale),
            accuracy=accuracy,
            context_window=1024,
        )

    return EnergyProfile.new(
        {"tiny-a": entry(1.0, 0.4), "tiny-b": entry(5.0, 0.8)},
        device=DeviceInfo(name="made up for the tiny test models", kind="cpu"),
        energy_method="estimate",
        description="made-up coefficients for the tiny offline test models",
    )
