"""EnergyCallbackHandler and get_energy_callback against real LangChain runnables."""

from __future__ import annotations

import asyncio
import threading
import time
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
from langchain_energyrouter.errors import MeterError, RoutingError
from langchain_energyrouter.router import EnergyAwareRouter


class MeteredFakeChatModel(BaseChatModel):
    """Answers "ok" and, as the router will, puts a real meter window into response_metadata."""

    meter: Any
    name_of_model: str = "fake-model"
    energy_in_generation_info: bool = False
    barrier: Any = None
    """If set, every call waits on it with its window open, spins ``busy_cpu_s``, and waits again."""
    busy_cpu_s: float = 0.0

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
            if self.barrier is not None:
                self.barrier.wait()
                _spin_cpu(self.busy_cpu_s)
                self.barrier.wait()
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


def _spin_cpu(seconds: float) -> None:
    """Burn ``seconds`` of this thread's CPU time."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


@pytest.fixture
def meter() -> Iterator[EstimateMeter]:
    with EstimateMeter() as m:
        yield m


def assert_consistent(handler: EnergyCallbackHandler, calls: int, method: str = "estimate") -> None:
    records = handler.records
    assert len(records) == calls
    assert len({r.run_id for r in records}) == calls
    assert handler.calls_by_method == {method: calls}
    alone_j = sum(r.reading.energy_j or 0.0 for r in records if not r.overlapped)
    overlapped_j = sum(r.reading.energy_j or 0.0 for r in records if r.overlapped)
    assert handler.total_energy_j(method=method) == pytest.approx(alone_j)
    assert handler.total_energy_j() == pytest.approx(alone_j)
    assert handler.total_energy_j(method=method, overlapped=True) == pytest.approx(overlapped_j)
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


# -- overlapped readings (issue 12, item 5) ----------------------------------------------
def test_overlapped_readings_are_kept_out_of_the_totals(caplog: pytest.LogCaptureFixture) -> None:
    """Four batched calls whose windows all overlap: each reading holds all four calls' CPU time.

    Summed, they reported about 4x the CPU time x watts the batch used; the totals now leave
    them out and keep them apart, never adding them up silently.
    """
    handler = EnergyCallbackHandler()
    with EstimateMeter(watts_per_thread_w=1.0) as meter:
        model = MeteredFakeChatModel(meter=meter, barrier=threading.Barrier(4, timeout=60), busy_cpu_s=0.05)
        cpu_before_s = time.process_time()
        model.batch(["a", "b", "c", "d"], config={"callbacks": [handler], "max_concurrency": 4})
        batch_j = (time.process_time() - cpu_before_s) * 1.0  # what the batch really used, at 1 W
    records = handler.records
    assert len(records) == 4 and all(r.overlapped for r in records)
    readings_j = sum(r.reading.energy_j or 0.0 for r in records)
    assert readings_j > 2 * batch_j  # the double counting the totals must not show
    assert handler.energy_j_by_method.get("estimate", 0.0) <= batch_j
    assert handler.energy_j_by_method == {}
    assert handler.overlapped_energy_j_by_method == {"estimate": pytest.approx(readings_j)}
    assert handler.overlapped_energy_j_by_model == {"fake-model": {"estimate": pytest.approx(readings_j)}}
    assert handler.overlapped_calls_by_method == {"estimate": 4}
    assert handler.calls_by_method == {"estimate": 4}
    assert handler.total_energy_j() == 0.0
    assert handler.total_energy_j("estimate", overlapped=True) == pytest.approx(readings_j)
    assert [r.message for r in caplog.records if "overlapped" in r.message].__len__() == 1
    assert "overlapped_energy_j_by_method" in repr(handler)


def test_a_lone_call_is_not_overlapped(meter: EstimateMeter) -> None:
    handler = EnergyCallbackHandler()
    MeteredFakeChatModel(meter=meter).invoke("hi", config={"callbacks": [handler]})
    assert not handler.records[0].overlapped
    assert handler.overlapped_energy_j_by_method == {}
    assert set(handler.energy_j_by_method) == {"estimate"}


# -- failed attempts (issue 12, item 7) --------------------------------------------------
def _failure(model: str, reading: EnergyReading | None, error_type: str = "OutOfMemoryError") -> dict[str, Any]:
    """One ``routing["failures"]`` entry, in the router's shape."""
    return {
        "model": model,
        "error_type": error_type,
        "error": "CUDA out of memory",
        "runtime_s": None if reading is None else reading.runtime_s,
        "energy_j": None if reading is None else reading.energy_j,
        "method": None if reading is None else reading.method,
        "flags": [] if reading is None else list(reading.flags),
    }


_GPU = ("cuda:0",)


def _gpu_reading(energy_j: float, runtime_s: float) -> EnergyReading:
    return EnergyReading(energy_j, {"cuda:0": energy_j}, runtime_s, "nvml_counter", is_estimate=False, devices=_GPU)


def test_failed_attempts_before_the_answer_count(meter: EstimateMeter) -> None:
    """A fallback answer: the first candidate ran out of memory after 30 s of GPU work."""
    oom = _gpu_reading(9000.0, 30.0)
    answer = _gpu_reading(150.0, 1.5)
    failures = [_failure("big", oom), _failure("flaky", None, "TimeoutError")]
    message = AIMessage(
        content="ok",
        response_metadata={
            "model_name": "small",
            "energy": answer.as_metadata(),
            "routing": {"served_by": "small", "failures": failures},
        },
    )
    handler = EnergyCallbackHandler()
    GenericFakeChatModel(messages=iter([message])).invoke("hi", config={"callbacks": [handler]})

    assert handler.energy_j_by_method == {"nvml_counter": pytest.approx(9150.0)}
    assert handler.failed_energy_j_by_method == {"nvml_counter": pytest.approx(9000.0)}
    assert handler.failed_calls_by_method == {"nvml_counter": 1}
    assert handler.calls_by_method == {"nvml_counter": 2}
    assert handler.failed_attempts_without_energy == 1
    assert handler.runtime_s_by_method == {"nvml_counter": pytest.approx(31.5)}
    assert handler.energy_j_by_model == {"big": {"nvml_counter": 9000.0}, "small": {"nvml_counter": 150.0}}
    failed = [r for r in handler.records if r.failed]
    assert [(r.model_name, r.error_type, r.failed_attempt) for r in failed] == [("big", "OutOfMemoryError", 0)]
    assert (failed[0].reading.energy_j, failed[0].reading.runtime_s, failed[0].reading.is_estimate) == (
        9000.0,
        30.0,
        False,
    )
    assert handler.failed_runs == 0


def test_estimate_failures_default_is_estimate_and_flags_survive(meter: EstimateMeter) -> None:
    reading = meter.end(meter.begin())
    handler = EnergyCallbackHandler()
    message = AIMessage(content="ok", response_metadata={"routing": {"failures": [_failure("cpu-model", reading)]}})
    GenericFakeChatModel(messages=iter([message])).invoke("hi", config={"callbacks": [handler]})
    (record,) = handler.records
    assert record.failed and record.reading.is_estimate and record.reading.flags == reading.flags
    assert handler.calls_without_energy == 1  # the answer itself carried no energy


class _FailingChatModel(BaseChatModel):
    """Raises the exception it holds, as the router does when every candidate failed."""

    error: Any

    @property
    def _llm_type(self) -> str:
        return "failing-fake"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        raise self.error


def test_a_call_whose_every_candidate_failed_still_counts() -> None:
    """The router's own RoutingError (failures: {name: exception}) still hands the attempts' joules over."""
    from tests.unit_tests.test_router_metering import Burns, entry, profile_of

    router = EnergyAwareRouter(
        models={"burns-1": Burns(), "burns-2": Burns()},
        profile=profile_of(**{"burns-1": entry(), "burns-2": entry()}),
        meter=EstimateMeter(),
        learn=False,
    )
    handler = EnergyCallbackHandler()
    with get_energy_callback() as cb, pytest.raises(RoutingError) as info:
        router.invoke("hi", config={"callbacks": [handler]})
    attempts = info.value.routing_failures  # type: ignore[attr-defined]
    spent_j = sum(a["energy_j"] for a in attempts if "overlapped" not in a["flags"])
    assert spent_j > 0
    for h in (handler, cb):
        assert h.failed_runs == 1
        assert h.energy_j_by_method == {"estimate": pytest.approx(spent_j)}
        assert h.failed_energy_j_by_method == {"estimate": pytest.approx(spent_j)}
        assert h.failed_calls_by_method == {"estimate": 2}
        assert [r.model_name for r in h.records] == [a["model"] for a in attempts]
        assert h.calls_without_energy == 0


@pytest.mark.parametrize(
    "error",
    [
        ValueError("no reading at all"),
        RoutingError("every candidate failed", {"big": MemoryError("oom")}),  # model -> exception: no readings
    ],
    ids=["plain-error", "routing-error-without-readings"],
)
def test_a_failed_call_without_readings_is_counted_not_lost(error: BaseException) -> None:
    handler = EnergyCallbackHandler()
    with pytest.raises(type(error)):
        _FailingChatModel(error=error).invoke("hi", config={"callbacks": [handler]})
    assert handler.records == []
    assert handler.failed_runs == 1
    assert handler.calls_without_energy == 1
    assert handler.failed_attempts_without_energy == (1 if isinstance(error, RoutingError) else 0)
