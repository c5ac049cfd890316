"""The examples run end to end (tiny offline models; the agent's endpoint is served on loopback)."""

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
    example = load("agent_tools")
    assert example.main(["--question", "What is 6 times 7?"]) == 0
    out = capsys.readouterr().out
    assert "answer: The answer is 42." in out
    assert "excluded tiny-local: cannot call tools" in out

    with example.serve_fake_openai() as url:
        router = example.build_router(url)
        result = example.run_agent(router, "What is 3 times 5?")
        # Without tools the cheap local model serves; streaming goes through the endpoint's SSE path too.
        assert router.invoke("hello").response_metadata["model_name"] == "tiny-local"
        chunks = list(router.bind_tools([example.multiply]).stream("What is 2 times 3?"))
    assert result["answer"] == "The answer is 15."
    assert [c["model"] for c in result["calls"]] == ["endpoint", "endpoint"]
    assert result["calls"][0]["tool_calls"] == ["multiply"]
    assert {c["energy_method"] for c in result["calls"]} == {"none"}
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged = merged + chunk
    assert merged.tool_calls[0]["args"] == {"a": 2, "b": 3}
    assert merged.response_metadata["routing"]["served_by"] == "endpoint"
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
