"""The embedded default models, loaded for real from their PyPI packages.

Slow: the first run converts each GGUF to a cached fp32 copy (SmolLM2 about
20-60 s, Gemma about 45-140 s on a small CPU box); later runs load the cache.
Timings are printed (run with ``-s``), never asserted.
"""

from __future__ import annotations

import importlib.util
import json
import time

import pytest
from langchain_core.messages import AIMessage

from langchain_energyrouter.models import (
    CACHE_MARKER,
    EMBEDDED_MODELS,
    is_valid_cache_entry,
    load_chat_model,
    load_model_and_tokenizer,
    resolve_model,
)

pytestmark = pytest.mark.integration


def _require(name: str) -> None:
    entry = EMBEDDED_MODELS[name]
    if importlib.util.find_spec(entry.package) is None:
        pytest.skip(f"{entry.distribution} is not installed; install it with: {entry.install_command}")


def _timed_load(name: str, max_new_tokens: int) -> tuple[object, float]:
    started = time.perf_counter()
    chat = load_chat_model(name, max_new_tokens=max_new_tokens)
    return chat, time.perf_counter() - started


def test_smollm2_answers_and_uses_cache() -> None:
    _require("smollm2-135m")
    was_cached = resolve_model("smollm2-135m").is_cached
    chat, first_s = _timed_load("smollm2-135m", 16)
    started = time.perf_counter()
    answer = chat.invoke("What is the capital of France?")  # type: ignore[attr-defined]
    invoke_s = time.perf_counter() - started
    assert isinstance(answer, AIMessage)
    assert "paris" in str(answer.content).lower()
    assert chat.model_id == "smollm2-135m"  # type: ignore[attr-defined]

    resolved = resolve_model("smollm2-135m")
    assert resolved.cache_path is not None
    assert resolved.is_cached
    assert (resolved.cache_path / CACHE_MARKER).is_file()
    marker = json.loads((resolved.cache_path / CACHE_MARKER).read_text())
    assert "model.safetensors" in marker["files"]

    again, second_s = _timed_load("smollm2-135m", 16)
    assert again.invoke("What is the capital of France?").content == answer.content  # type: ignore[attr-defined]
    print(
        f"\nsmollm2-135m: cache before={was_cached} first load {first_s:.1f}s, "
        f"cached load {second_s:.1f}s, invoke {invoke_s:.2f}s, answer {answer.content!r}"
    )


def test_smollm2_raw_model_forces_output_length() -> None:
    _require("smollm2-135m")
    import torch

    model, tokenizer = load_model_and_tokenizer("smollm2-135m")
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )
    encoded = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**encoded, min_new_tokens=12, max_new_tokens=12, do_sample=False)  # type: ignore[operator]
    assert out.shape[1] - encoded["input_ids"].shape[1] == 12


def test_gemma3_answers_as_a_one_line_completion() -> None:
    _require("gemma3-270m")
    chat, first_s = _timed_load("gemma3-270m", 12)
    tokenizer = chat.tokenizer  # type: ignore[attr-defined]
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt.endswith("Question: Hi\nAnswer:")  # a base model: a Q/A completion, not chat turns
    model = chat.llm.pipeline.model  # type: ignore[attr-defined]
    eos = model.generation_config.eos_token_id
    stops = {tokenizer.convert_tokens_to_ids(t) for t in ("<end_of_turn>", "\n", "\n\n")}
    assert stops <= set(eos if isinstance(eos, list) else [eos])

    started = time.perf_counter()
    answer = chat.invoke("What is the capital of France?")  # type: ignore[attr-defined]
    invoke_s = time.perf_counter() - started
    assert isinstance(answer, AIMessage)
    assert "Paris" in str(answer.content)
    assert "Question:" not in str(answer.content)  # stopped at the end of its line
    assert is_valid_cache_entry(resolve_model("gemma3-270m").cache_path)  # type: ignore[arg-type]
    print(f"\ngemma3-270m: load {first_s:.1f}s, invoke {invoke_s:.2f}s, answer {answer.content!r}")
