"""Token counting shares work (issue 12 item 16): per tokenizer and template, per conversation, tools counted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.utils.function_calling import convert_to_openai_tool

from langchain_energyrouter import CostModel, DeviceInfo, EnergyProfile, ModelProfile
from langchain_energyrouter.energy import EstimateMeter
from langchain_energyrouter.router import EnergyAwareRouter
from langchain_energyrouter.router.tokens import CHARS_PER_TOKEN, TokenCounter
from langchain_energyrouter.testing import TINY_CHAT_TEMPLATE, build_tiny_chat_model, build_tiny_tokenizer

QUESTION = [SystemMessage("Answer briefly."), HumanMessage("What is the capital of France?")]

TOOLS_TEMPLATE = "{% if tools %}{{ '<|system|>' + (tools | tojson) + eos_token }}{% endif %}" + TINY_CHAT_TEMPLATE
"""The tiny template, plus the tools as JSON in a system turn (as real tool-calling templates do)."""


def spy_on_renders(tokenizer: Any) -> list[int]:
    """Count ``apply_chat_template`` calls on ``tokenizer`` (the real method still runs)."""
    calls: list[int] = []
    real: Callable[..., Any] = tokenizer.apply_chat_template

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    tokenizer.apply_chat_template = counted
    return calls


def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def test_candidates_sharing_a_tokenizer_are_counted_once() -> None:
    a, b = build_tiny_chat_model("tiny-a"), build_tiny_chat_model("tiny-b", hidden_size=64)
    shared = a.tokenizer  # type: ignore[attr-defined]
    b.tokenizer = shared  # type: ignore[attr-defined]
    b.llm.pipeline.tokenizer = shared  # type: ignore[attr-defined]
    renders = spy_on_renders(shared)
    counter = TokenCounter({"tiny-a": a, "tiny-b": b})
    counts = counter.count_all(QUESTION)
    assert counts["tiny-a"] == counts["tiny-b"] > 0
    assert len(renders) == 1


def test_a_conversation_counted_before_is_not_rendered_again() -> None:
    models: dict[str, BaseChatModel] = {"tiny-a": build_tiny_chat_model("tiny-a")}
    renders = spy_on_renders(models["tiny-a"].tokenizer)  # type: ignore[attr-defined]
    profile = EnergyProfile.new(
        {
            "tiny-a": ModelProfile(
                runtime=CostModel(intercept=0.01, input_tokens=0.0, output_tokens=0.001),
                energy=CostModel(intercept=0.1, input_tokens=0.0, output_tokens=0.01),
                accuracy=0.5,
                context_window=1024,
            )
        },
        device=DeviceInfo(name="test"),
        energy_method="estimate",
    )
    router = EnergyAwareRouter(models=models, profile=profile, meter=EstimateMeter())
    decided = router.explain(QUESTION).candidates["tiny-a"].input_tokens
    assert len(renders) == 1
    message = router.invoke(QUESTION)
    # The one more render is ChatHuggingFace building its prompt: the router's count was reused.
    assert len(renders) == 2
    assert message.usage_metadata is not None and message.usage_metadata["input_tokens"] == decided


def test_bound_tools_are_counted() -> None:
    chat = build_tiny_chat_model("tiny-a")
    tokenizer = build_tiny_tokenizer()
    tokenizer.chat_template = TOOLS_TEMPLATE
    chat.tokenizer = tokenizer
    counter = TokenCounter({"tool-template": chat, "chars": GenericFakeChatModel(messages=iter([]))})
    tools = [convert_to_openai_tool(multiply)]
    plain = counter.count_messages("tool-template", QUESTION)
    with_tools = counter.count_messages("tool-template", QUESTION, tools=tools)
    assert with_tools > plain + 10  # the schema's tokens
    assert counter.count_messages("chars", QUESTION, tools=tools) > counter.count_messages("chars", QUESTION)


def test_excluded_candidates_are_not_tokenized() -> None:
    a = build_tiny_chat_model("tiny-a")
    renders = spy_on_renders(a.tokenizer)
    counter = TokenCounter({"tiny-a": a})
    approximate = counter.count_all(QUESTION, approximate={"tiny-a"})
    assert renders == []
    text = "\n".join(str(m.content) for m in QUESTION)
    assert approximate == {"tiny-a": -(-len(text) // CHARS_PER_TOKEN)}


def test_the_lru_is_bounded_and_exact() -> None:
    a = build_tiny_chat_model("tiny-a")
    counter = TokenCounter({"tiny-a": a}, cache_size=2)
    prompts = [[HumanMessage(f"question {i}")] for i in range(4)]
    first = [counter.count_messages("tiny-a", p) for p in prompts]
    renders = spy_on_renders(a.tokenizer)
    assert [counter.count_messages("tiny-a", p) for p in prompts[2:]] == first[2:]
    assert renders == []  # the two latest are remembered
    assert counter.count_messages("tiny-a", prompts[0]) == first[0]
    assert len(renders) == 1  # the oldest was evicted


def test_generation_steps_count_the_token_that_ended_the_answer() -> None:
    from langchain_energyrouter.testing import build_tiny_chat_model

    chat = build_tiny_chat_model("tiny-a")
    counter = TokenCounter({"tiny-a": chat})
    tokenizer = chat.llm.pipeline.tokenizer
    text = "the sea is blue"
    counted = counter.count_text("tiny-a", text)
    # A special EOS is stripped from the text: one decoding step more than the text's tokens.
    assert counter.generation_steps("tiny-a", text, counted, capped=False) == counted + 1
    # Cut by the cap: no ending token at all.
    assert counter.generation_steps("tiny-a", text, counted, capped=True) == counted
    # A plain-text end token (Gemma ends its one-line answers on a newline token) stays in the text.
    last_id = tokenizer.encode(text, add_special_tokens=False)[-1]
    chat.llm.pipeline.model.generation_config.eos_token_id = [tokenizer.eos_token_id, last_id]
    assert counter.generation_steps("tiny-a", text, counted, capped=False) == counted
