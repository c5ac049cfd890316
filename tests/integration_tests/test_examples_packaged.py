"""The examples on the packaged models give right answers, not only answers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from langchain_energyrouter.models import installed_embedded_models

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        set(installed_embedded_models()) != {"smollm2-135m", "gemma3-270m"},
        reason="the embedded models' packages are not installed (make setup installs them)",
    ),
]


def _repeats_a_phrase(text: str, words: int = 3, times: int = 3) -> bool:
    """Whether some run of ``words`` words occurs ``times`` times or more (a model looping on a phrase)."""
    tokens = text.lower().split()
    runs = [tuple(tokens[i : i + words]) for i in range(len(tokens) - words + 1)]
    return any(runs.count(run) >= times for run in set(runs))


def test_repeats_a_phrase_spots_a_loop() -> None:
    assert _repeats_a_phrase("La femme de France, la femme de France, la femme de France,")
    assert not _repeats_a_phrase("The capital of France is Paris.")


def test_lcel_chain_packaged_answers_paris_under_every_preset() -> None:
    spec = importlib.util.spec_from_file_location("example_lcel_chain", EXAMPLES / "lcel_chain.py")
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    router = example.build_router(packaged=True)
    try:
        rows = example.run(router, "What is the capital of France?")
    finally:
        router.close()
    assert len(rows) == 3
    for row in rows:
        assert "Paris" in row["answer"] and not _repeats_a_phrase(row["answer"]), row


def test_gemma_answers_without_template_residue_streamed_or_not() -> None:
    from langchain_energyrouter.models import load_chat_model
    from langchain_energyrouter.router import EnergyAwareRouter
    from langchain_energyrouter.testing import tiny_profile

    gemma = load_chat_model("gemma3-270m", max_new_tokens=16)
    assert gemma.invoke("What is the capital of France?").content == "Paris"  # was ' Paris\n\n'
    profile = tiny_profile().with_models({"gemma3-270m": tiny_profile().models["tiny-a"]})
    router = EnergyAwareRouter(models={"gemma3-270m": gemma}, energy_profile=profile, learn=False)
    try:
        for prompt in ("What is the capital of France?", "Name three colours."):
            answer = str(router.invoke(prompt).content)
            streamed = "".join(str(chunk.content) for chunk in router.stream(prompt))
            assert answer == streamed == answer.strip() and answer, (answer, streamed)
    finally:
        router.close()
