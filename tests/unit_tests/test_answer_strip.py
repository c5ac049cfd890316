"""A model whose answers carry template residue streams without it, as its non-streamed answer does."""

from __future__ import annotations

from langchain_energyrouter.router import EnergyAwareRouter
from langchain_energyrouter.testing import tiny_chat_models, tiny_profile


def _streamed(router: EnergyAwareRouter, prompt: str) -> str:
    return "".join(str(chunk.content) for chunk in router.stream(prompt, model="tiny-a"))


def test_a_strip_answer_pipeline_streams_the_stripped_answer() -> None:
    models = tiny_chat_models()
    router = EnergyAwareRouter(models=models, profile=tiny_profile(), learn=False, max_tokens=12)
    try:
        prompts = [f"Say hello to {name}." for name in ("Anna", "Ben", "Cleo", "Dan", "Eve", "Finn")]
        plain = [_streamed(router, p) for p in prompts]
        assert any(text != text.strip() for text in plain), plain  # the tiny model's text has edge whitespace
        models["tiny-a"].llm.pipeline.strip_answer = True  # type: ignore[attr-defined]
        stripped = [_streamed(router, p) for p in prompts]
    finally:
        router.close()
    assert stripped == [text.strip() for text in plain]
