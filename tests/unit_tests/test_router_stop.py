"""``stop=[...]`` reaches local pipelines (issue 12 item 12): generation stops and the text is cut."""

from __future__ import annotations

from functools import lru_cache

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage

from langchain_energyrouter import CostModel, DeviceInfo, EnergyProfile, ModelProfile
from langchain_energyrouter.energy import EstimateMeter
from langchain_energyrouter.router import EnergyAwareRouter
from langchain_energyrouter.router.local_stream import cut_at_stop
from langchain_energyrouter.testing import build_tiny_chat_model

QUESTION = [HumanMessage("What is the capital of France?")]


@lru_cache(maxsize=1)
def _model() -> BaseChatModel:
    return build_tiny_chat_model("tiny-a", max_new_tokens=16)


def make_router() -> EnergyAwareRouter:
    entry = ModelProfile(
        runtime=CostModel(intercept=0.01, input_tokens=0.0, output_tokens=0.001),
        energy=CostModel(intercept=0.1, input_tokens=0.0, output_tokens=0.01),
        accuracy=0.5,
        context_window=1024,
    )
    profile = EnergyProfile.new({"tiny-a": entry}, device=DeviceInfo(name="test"), energy_method="estimate")
    return EnergyAwareRouter(models={"tiny-a": _model()}, profile=profile, meter=EstimateMeter())


def _stop_inside(text: str) -> tuple[str, str]:
    """A stop string from the middle of ``text`` and the text LangChain promises before it."""
    middle = len(text) // 2
    stop = text[middle : middle + 2]
    expected, hit = cut_at_stop(text, [stop])
    assert hit
    return stop, expected


def test_stop_strings_cut_local_answers() -> None:
    router = make_router()
    full = router.invoke(QUESTION)
    assert full.usage_metadata is not None and full.usage_metadata["output_tokens"] == 16
    text = str(full.content)
    stop, expected = _stop_inside(text)

    stopped = router.invoke(QUESTION, stop=[stop])
    assert stopped.content == expected
    assert stopped.usage_metadata is not None and stopped.usage_metadata["output_tokens"] < 16  # generation stopped

    chunks = list(router.stream(QUESTION, stop=[stop]))
    assert "".join(str(c.content) for c in chunks) == expected
    assert all(stop not in str(c.content) for c in chunks)


async def test_stop_strings_cut_local_answers_async() -> None:
    router = make_router()
    text = str((await router.ainvoke(QUESTION)).content)
    stop, expected = _stop_inside(text)
    assert (await router.ainvoke(QUESTION, stop=[stop])).content == expected
    assert "".join([str(c.content) async for c in router.astream(QUESTION, stop=[stop])]) == expected


def test_cut_at_stop_takes_the_earliest_stop_string() -> None:
    assert cut_at_stop("abcdef", ["ef", "cd"]) == ("ab", True)
    assert cut_at_stop("abcdef", ["xy"]) == ("abcdef", False)
    assert cut_at_stop("abcdef", None) == ("abcdef", False)
