"""The examples run end to end (tiny offline models; the agent's engine and tool endpoint run on loopback)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lcel_chain(capsys: pytest.CaptureFixture[str]) -> None:
    example = load("lcel_chain")
    assert example.main([]) == 0
    out = capsys.readouterr().out
    assert "accuracy-first: tiny-b" in out
    assert "energy-first: tiny-a" in out
    assert "measured (" in out

    router = example.build_router()
    try:
        rows = example.run(router, "Why is the sky blue?")
    finally:
        router.close()
    assert [row["model"] for row in rows] == ["tiny-b", "tiny-a", "tiny-a"]
    assert all(isinstance(row["answer"], str) and row["answer"] for row in rows)


def test_agent_tools(capsys: pytest.CaptureFixture[str]) -> None:
    """The agent over a real engine (``transformers serve`` on loopback), a local pipeline and a tool endpoint.

    The tool-calling steps still go to the example's scripted endpoint: no model that can be installed
    here emits tool calls (the tiny models and the packaged 135M one do not). Everything without tools
    is answered by real models: the engine and the local pipeline.
    """
    pytest.importorskip("fastapi", reason="transformers serve needs the transformers[serving] packages")
    pytest.importorskip("uvicorn", reason="transformers serve needs the transformers[serving] packages")
    example = load("agent_tools")
    with example.serve_transformers() as (engine_url, engine_model):
        args = ["--question", "What is 6 times 7?", "--engine-url", engine_url, "--engine-model", engine_model]
        assert example.main(args) == 0
        out = capsys.readouterr().out
        assert "answer: The answer is 42." in out
        assert "excluded tiny-local: cannot call tools" in out
        assert "excluded engine: cannot call tools" in out
        assert "no tools, balanced: engine (energy: none)" in out
        assert "no tools, energy-first: tiny-local (energy: estimate)" in out

        with example.serve_fake_openai() as url:
            router = example.build_router(url, engine_url, engine_model)
            result = example.run_agent(router, "What is 3 times 5?")
            # Without tools the real engine answers (balanced weights), streaming through its SSE as well.
            answer = router.invoke("hello")
            streamed = list(router.stream("hello"))
            # With tools bound, the scripted endpoint's SSE path carries the tool call.
            chunks = list(router.bind_tools([example.multiply]).stream("What is 2 times 3?"))
    assert result["answer"] == "The answer is 15."
    assert [c["model"] for c in result["calls"]] == ["tools", "tools"]
    assert result["calls"][0]["tool_calls"] == ["multiply"]
    assert {c["energy_method"] for c in result["calls"]} == {"none"}
    assert answer.response_metadata["routing"]["served_by"] == "engine"
    assert answer.response_metadata["energy"]["method"] == "none"  # spent in the engine's process
    assert isinstance(answer.content, str) and answer.content
    assert answer.usage_metadata is not None and 1 <= answer.usage_metadata["output_tokens"] <= 16  # engine's cap
    text = "".join(c.text for c in streamed)
    assert text and streamed[-1].response_metadata["routing"]["served_by"] == "engine"
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk
    assert merged.tool_calls[0]["args"] == {"a": 2, "b": 3}
    assert merged.response_metadata["routing"]["served_by"] == "tools"
    assert sum(1 for c in chunks if c.usage_metadata) == 1


def test_energy_callback(capsys: pytest.CaptureFixture[str]) -> None:
    assert load("energy_callback").main([]) == 0
    out = capsys.readouterr().out
    assert out.count(" J (estimate) in ") == 4  # invoke, stream, and two batch calls: one record each
    assert "calls by method: {'estimate': 4}" in out


def test_calibrate_then_route(capsys: pytest.CaptureFixture[str]) -> None:
    assert load("calibrate_then_route").main([]) == 0
    out = capsys.readouterr().out
    assert "profiled ['tiny-a', 'tiny-b'] -> energy method estimate" in out
    assert "accuracy-first:" in out and "energy-first:" in out
