"""EnergyCallbackHandler and get_energy_callback against real LangChain runnables."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import uuid4

import pytest
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.tracers import context as tracer_context

from langchain_energyrouter import callbacks as callbacks_module
from langchain_energyrouter.callbacks import EnergyCallbackHandler, EnergyRecord, get_energy_callback
from langchain_energyrouter.energy import EnergyMeter, EnergyReading, EstimateMeter, NullMeter
from langchain_energyrouter.errors import MeterError


class MeteredFakeChatModel(BaseChatModel):
    """Answers "ok" and, as the router will, puts a real meter window into response_metadata."""

    meter: Any
    name_of_model: str = "fake-model"
    energy_in_generation_info: bool = False

    @property
    def _llm_type(self) -> str:
        return "metered-fake"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        meter: EnergyMeter = self.meter
        handle = meter.begin()
        try:
            text = "ok " * 10
        finally:
            energy = meter.end(handle).as_metadata()
        if self.energy_in_generation_info:
            info = {"energy": energy, "model_name": self.name_of_model}
            return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text), generation_info=info)])
        metadata = {"energy": energy, "model_name": self.name_of_model}
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text, response_metadata=metadata))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        handle = self.meter.begin()
        try:
            for word in ("o", "k", "!"):
                yield ChatGenerationChunk(message=AIMessageChunk(content=word))
        finally:
            energy = self.meter.end(handle).as_metadata()
        # energy and model name only on the last chunk: merging would concatenate strings
        metadata = {"energy": energy, "model_name": self.name_of_model}
        yield ChatGenerationChunk(message=AIMessageChunk(content="", response_metadata=metadata))


@pytest.fixture
def meter() -> Iterator[EstimateMeter]:
    with EstimateMeter() as m:
        yield m


def assert_consistent(handler: EnergyCallbackHandler, calls: int, method: str = "estimate") -> None:
    records = handler.records
    assert len(records) == calls
    assert len({r.run_id for r in records}) == calls
    assert handler.calls_by_method == {method: calls}
    expected_j = sum(r.reading.energy_j or 0.0 for r in records)
    assert handler.total_energy_j(method=method) == pytest.approx(expected_j)
    assert handler.total_energy_j() == pytest.approx(expected_j)
    assert handler.runtime_s_by_method[method] == pytest.approx(sum(r.reading.runtime_s for r in records))


def test_invoke_records_once_and_leaves_message_alone(meter: EstimateMeter) -> None:
    handler = EnergyCallbackHandler()
    model = MeteredFakeChatModel(meter=meter)
    message = model.invoke("hi", config={"callbacks": [handler]})
    assert_consistent(handler, 1)
    record = handler.records[0]
    assert record.model_name == "fake-model"
    assert record.reading.is_estimate is True
    assert record.reading.as_metadata() == message.response_metadata["energy"]
    assert set(message.response_metadata) == {"energy", "model_name"}
    assert handler.energy_j_by_model == {"fake-model": {"estimate": record.reading.energy_j}}


def test_stream_records_once_per_call(meter: EstimateMeter) -> None:
    handler = EnergyCallbackHandler()
    model = MeteredFakeChatModel(meter=meter)
    for _ in range(3):
        chunks = list(model.stream("hi", config={"callbacks": [handler]}))
        assert "".join(str(c.content) for c in chunks) == "ok!"
    assert_consistent(handler, 3)
    assert {r.model_name for r in handler.records} == {"fake-model"}


def test_async_invoke_and_stream(meter: EstimateMeter) -> None:
    handler = EnergyCallbackHandler()
    model = MeteredFakeChatModel(meter=meter)

    async def main() -> None:
        await model.ainvoke("hi", config={"callbacks": [handler]})
        async for _ in model.astream("hi", config={"callbacks": [handler]}):
            pass
        await asyncio.gather(*(model.ainvoke("hi", config={"callbacks": [handler]}) for _ in range(4)))

    asyncio.run(main())
    assert_consistent(handler, 6)


def test_batch_records_every_input(meter: EstimateMeter) -> None:
    handler = EnergyCallbackHandler()
    model = MeteredFakeChatModel(meter=meter)
    model.batch(["a", "b", "c", "d", "e"], config={"callbacks": [handler]})
    assert_consistent(handler, 5)


def test_thread_safe_under_32_concurrent_calls(meter: EstimateMeter) -> None:
    handler = EnergyCallbackHandler()
    model = MeteredFakeChatModel(meter=meter)
    with ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(lambda i: model.invoke(f"q{i}", config={"callbacks": [handler]}), range(32)))
    assert_consistent(handler, 32)


def test_generation_info_is_read_too(meter: EstimateMeter) -> None:
    handler = EnergyCallbackHandler()
    MeteredFakeChatModel(meter=meter, energy_in_generation_info=True, name_of_model="gi").invoke(
        "hi", config={"callbacks": [handler]}
    )
    assert [r.model_name for r in handler.records] == ["gi"]


def test_methods_are_never_added_together(meter: EstimateMeter) -> None:
    handler = EnergyCallbackHandler()
    with NullMeter() as remote:
        MeteredFakeChatModel(meter=meter, name_of_model="local").invoke("hi", config={"callbacks": [handler]})
        MeteredFakeChatModel(meter=remote, name_of_model="remote").invoke("hi", config={"callbacks": [handler]})
    assert handler.calls_by_method == {"estimate": 1, "none": 1}
    assert set(handler.energy_j_by_method) == {"estimate"}  # "none" has no joules
    assert handler.total_energy_j(method="none") == 0.0
    assert handler.total_energy_j(method="estimate", model="remote") == 0.0
    assert "none" in handler.runtime_s_by_method
    measured = EnergyReading(5.0, {"cuda:0": 5.0}, 1.0, "nvml_counter", is_estimate=False, devices=("cuda:0",))
    assert handler.add(EnergyRecord(run_id=uuid4(), model_name="gpu", reading=measured))
    with pytest.raises(MeterError, match=r"several methods \['estimate', 'nvml_counter'\]"):
        handler.total_energy_j()
    assert handler.total_energy_j(method="nvml_counter") == 5.0
    handler.reset()
    assert handler.records == [] and handler.total_energy_j() == 0.0


def test_calls_without_energy_are_counted_not_recorded() -> None:
    handler = EnergyCallbackHandler()
    GenericFakeChatModel(messages=iter(["plain"])).invoke("hi", config={"callbacks": [handler]})
    assert handler.records == []
    assert handler.calls_without_energy == 1


def test_get_energy_callback_collects_inside_the_block_only(meter: EstimateMeter) -> None:
    model = MeteredFakeChatModel(meter=meter)
    model.invoke("before")
    with get_energy_callback() as cb:
        model.invoke("inside")
        model.batch(["b1", "b2"])
        with get_energy_callback() as inner:
            model.invoke("nested")
    model.invoke("after")
    assert len(inner.records) == 1
    assert_consistent(cb, 4)
    assert inner.records[0].run_id in {r.run_id for r in cb.records}


def test_get_energy_callback_resets_after_an_error(meter: EstimateMeter) -> None:
    model = MeteredFakeChatModel(meter=meter)
    with pytest.raises(RuntimeError, match="boom"), get_energy_callback() as cb:
        model.invoke("inside")
        raise RuntimeError("boom")
    model.invoke("after")
    assert len(cb.records) == 1
    assert callbacks_module._energy_callback_var.get() is None


def test_configure_hook_is_registered_once(meter: EstimateMeter) -> None:
    for _ in range(3):
        with get_energy_callback():
            MeteredFakeChatModel(meter=meter).invoke("hi")
    ours = [hook for hook in tracer_context._configure_hooks if hook[0] is callbacks_module._energy_callback_var]
    assert len(ours) == 1
