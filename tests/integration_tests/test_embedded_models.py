"""The embedded default models, loaded for real from their PyPI packages.

Slow: the first run converts each GGUF to a cached fp32 copy (SmolLM2 about
20-60 s, Gemma about 45-140 s on a small CPU box); later runs load the cache.
Timings are printed (run with ``-s``), never asserted.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import time
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage

from langchain_energyrouter.model_cache import CACHE_MARKER, cached_build, default_cache_dir, is_valid_cache_entry
from langchain_energyrouter.models import (
    EMBEDDED_MODELS,
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


# -- cache lock, cache directory, default dtype (issue 12, item 18) ------------------------
def test_concurrent_builders_wait_on_the_lock_even_without_fcntl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where ``fcntl`` is missing (Windows) the hand-written lock took no lock: both built."""
    monkeypatch.setitem(sys.modules, "fcntl", None)  # `import fcntl` now raises ImportError
    builds: list[int] = []
    start = threading.Barrier(2, timeout=30)

    def build(directory: Path) -> None:
        builds.append(threading.get_ident())
        time.sleep(0.3)  # long enough for the other caller to arrive while this one builds
        (directory / "weights.bin").write_bytes(b"x" * 16)

    entries: list[Path] = []

    def caller() -> None:
        start.wait()
        entries.append(cached_build(tmp_path, "entry", build))

    threads = [threading.Thread(target=caller) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(builds) == 1
    assert entries == [tmp_path / "entry", tmp_path / "entry"]
    assert is_valid_cache_entry(tmp_path / "entry")


def test_cache_dir_keeps_the_override_and_the_xdg_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LANGCHAIN_ENERGYROUTER_CACHE", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("LANGCHAIN_ENERGYROUTER_CACHE")
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert default_cache_dir() == tmp_path / "xdg" / "langchain-energyrouter"
        monkeypatch.delenv("XDG_CACHE_HOME")
        assert default_cache_dir() == Path.home() / ".cache" / "langchain-energyrouter"


def test_default_dtype_is_the_checkpoints_own(tmp_path: Path) -> None:
    """A bfloat16 checkpoint loads in bfloat16 (half the memory of the old float32 default)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from langchain_energyrouter.testing import build_tiny_model_and_tokenizer

    model, tokenizer = build_tiny_model_and_tokenizer("tiny-bf16")
    model.to(torch.bfloat16).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded, _ = load_model_and_tokenizer(str(tmp_path))
    assert loaded.dtype == torch.bfloat16
    forced, _ = load_model_and_tokenizer(str(tmp_path), dtype="float32")
    assert forced.dtype == torch.float32
