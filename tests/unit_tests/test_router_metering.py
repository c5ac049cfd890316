"""The router's meters: per candidate device, readings of failed attempts, and meters that fail.

Issue 12 items 4 (one meter per device; profile vs meter method), 7 (failed
attempts keep their readings) and 13 (a failing meter never fails the call).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import pytest
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from langchain_energyrouter import CostModel, DeviceInfo, EnergyProfile, ModelProfile, RoutingError
from langchain_energyrouter.energy import EstimateMeter
from langchain_energyrouter.energy.metering import FLAG_METER_FAILED, CandidateMeters
from langchain_energyrouter.errors import MeterError
from langchain_energyrouter.router import EnergyAwareRouter
from langchain_energyrouter.router.candidates import candidate_device
from langchain_energyrouter.testing import build_tiny_chat_model, tiny_chat_models
from tests.unit_tests.test_energy_nvml import FakeGpu, install, make_fake_pynvml

QUESTION = [HumanMessage("What is the capital of France?")]


@lru_cache(maxsize=1)
def _tiny() -> dict[str, BaseChatModel]:
    return dict(tiny_chat_models())


def entry(accuracy: float = 0.5, energy_j: float = 1.0) -> ModelProfile:
    return ModelProfile(
        runtime=CostModel(intercept=0.01, input_tokens=0.0, output_tokens=0.001),
        energy=CostModel(intercept=energy_j, input_tokens=0.0, output_tokens=0.01),
        accuracy=accuracy,
        context_window=1024,
    )


def profile_of(method: str = "estimate", **models: ModelProfile) -> EnergyProfile:
    return EnergyProfile.new(models, device=DeviceInfo(name="test", kind="cpu"), energy_method=method)  # type: ignore[arg-type]


class Burns(BaseChatModel):
    """Burns CPU for a while (real work a meter can see), then raises: an out-of-memory after some compute."""

    iterations: int = 200_000

    @property
    def _llm_type(self) -> str:
        return "burns"

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        total = 0
        for i in range(self.iterations):
            total += i * i
        raise RuntimeError(f"out of memory after {total} units of work")


class ClosesMeter(BaseChatModel):
    """Closes the router's meter while it is measuring this call (as a dead NVML poll thread would)."""

    meter: Any

    @property
    def _llm_type(self) -> str:
        return "closes-meter"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.meter.close()
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content="still answered"))])


# -- item 4: a meter per device ------------------------------------------------------
def test_a_cpu_model_on_a_gpu_host_is_not_billed_the_gpus_joules(monkeypatch: pytest.MonkeyPatch) -> None:
    # A GPU is visible (faked NVML), but the tiny models run on the CPU: they get a CPU meter.
    install(monkeypatch, make_fake_pynvml([FakeGpu(uuid="GPU-aaaa", pci_bus_id="00000000:17:00.0")]))
    router = EnergyAwareRouter(models=_tiny(), profile=profile_of(**{"tiny-a": entry(), "tiny-b": entry()}))
    try:
        message = router.invoke(QUESTION, model="tiny-a")
        assert message.response_metadata["energy"]["method"] in ("rapl", "estimate")
        assert not any(d.startswith("cuda") for d in message.response_metadata["energy"]["devices"])
    finally:
        router.close()


def test_a_gpu_candidate_is_metered_on_its_own_gpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    gpus = [FakeGpu(uuid=f"GPU-{i}{i}{i}{i}", pci_bus_id=f"00000000:{17 + i}:00.0") for i in range(3)]
    install(monkeypatch, make_fake_pynvml(gpus))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    meters = CandidateMeters({"on-gpu-1": "cuda:1", "on-cpu": "cpu", "remote": None})
    try:
        gpu_meter = meters.meter_for("on-gpu-1")
        assert gpu_meter.method == "nvml_counter"
        assert gpu_meter.devices == ("cuda:1",)  # type: ignore[attr-defined]
        handle = gpu_meter.begin()
        gpus[0].energy_mj += 5_000
        gpus[1].energy_mj += 2_000
        gpus[2].energy_mj += 7_000
        assert gpu_meter.end(handle).energy_j_by_device == {"cuda:1": 2.0}
        assert meters.meter_for("on-cpu").method in ("rapl", "estimate")
        assert meters.meter_for("remote").method == "none"
    finally:
        meters.close()


def test_a_model_split_over_gpus_is_metered_on_those_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    gpus = [FakeGpu(uuid=f"GPU-{i}{i}{i}{i}", pci_bus_id=f"00000000:{17 + i}:00.0") for i in range(3)]
    install(monkeypatch, make_fake_pynvml(gpus))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    chat = build_tiny_chat_model("split")
    assert candidate_device(chat) == "cpu"
    # What from_pretrained(device_map="auto") records on a model it spreads over GPUs 0 and 2.
    chat.llm.pipeline.model.hf_device_map = {"model.embed_tokens": 0, "model.layers.0": 2, "lm_head": "cuda:2"}  # type: ignore[attr-defined]
    device = candidate_device(chat)
    assert device == "cuda:0,cuda:2"
    meters = CandidateMeters({"split": device})
    try:
        assert meters.meter_for("split").devices == ("cuda:0", "cuda:2")  # type: ignore[attr-defined]
    finally:
        meters.close()


def test_profile_and_live_meter_methods_are_compared() -> None:
    profile = profile_of("nvml_counter", **{"tiny-a": entry(), "tiny-b": entry()})
    router = EnergyAwareRouter(models=_tiny(), profile=profile, meter=EstimateMeter())
    routing = router.invoke(QUESTION).response_metadata["routing"]
    assert routing["energy_method_mismatch"] == {
        "tiny-a": {"profile": "nvml_counter", "meter": "estimate"},
        "tiny-b": {"profile": "nvml_counter", "meter": "estimate"},
    }
    agreeing = EnergyAwareRouter(
        models=_tiny(), profile=profile_of(**{"tiny-a": entry(), "tiny-b": entry()}), meter=EstimateMeter()
    )
    assert "energy_method_mismatch" not in agreeing.invoke(QUESTION).response_metadata["routing"]


# -- item 7: failed attempts keep their readings ----------------------------------------
def test_a_failed_attempt_keeps_its_reading() -> None:
    models = {"burns": Burns(), "tiny-a": _tiny()["tiny-a"]}
    profile = profile_of(**{"burns": entry(accuracy=0.99), "tiny-a": entry(accuracy=0.1)})
    router = EnergyAwareRouter(models=models, profile=profile, meter=EstimateMeter(), weights={"accuracy": 1.0})
    routing = router.invoke(QUESTION).response_metadata["routing"]
    [failure] = routing["failures"]
    assert failure["model"] == "burns" and failure["error_type"] == "RuntimeError"
    assert failure["method"] == "estimate" and isinstance(failure["flags"], list)
    assert failure["energy_j"] > 0 and failure["runtime_s"] > 0  # the work before the error was measured


def test_when_every_candidate_fails_the_readings_leave_with_the_error() -> None:
    models = {"burns-1": Burns(), "burns-2": Burns()}
    router = EnergyAwareRouter(
        models=models, profile=profile_of(**{"burns-1": entry(), "burns-2": entry()}), meter=EstimateMeter()
    )
    with pytest.raises(RoutingError) as info:
        router.invoke(QUESTION)
    attempts = info.value.routing_failures  # type: ignore[attr-defined]
    assert [a["model"] for a in attempts] == list(router.explain(QUESTION).ranking)
    assert all(a["energy_j"] > 0 and a["method"] == "estimate" for a in attempts)
    # Without fallback the one attempt's reading leaves with the model's own error.
    with pytest.raises(RuntimeError, match="out of memory") as single:
        router.invoke(QUESTION, model="burns-2")
    [attempt] = single.value.routing_failures  # type: ignore[attr-defined]
    assert attempt["model"] == "burns-2" and attempt["energy_j"] > 0


# -- item 13: a failing meter never fails the call ------------------------------------------
def test_a_meter_that_cannot_begin_degrades_to_no_reading() -> None:
    meter = EstimateMeter()
    meter.close()  # begin() now raises MeterError
    with pytest.raises(MeterError):
        meter.begin()
    router = EnergyAwareRouter(
        models=_tiny(), profile=profile_of(**{"tiny-a": entry(), "tiny-b": entry()}), meter=meter
    )
    for message in (router.invoke(QUESTION), _merge(router.stream(QUESTION))):
        energy = message.response_metadata["energy"]
        assert message.content
        assert energy["method"] == "none" and energy["energy_j"] is None
        assert energy["flags"] == [FLAG_METER_FAILED] and energy["runtime_s"] > 0


def test_a_meter_that_fails_at_the_end_degrades_to_no_reading() -> None:
    meter = EstimateMeter()
    router = EnergyAwareRouter(models={"m": ClosesMeter(meter=meter)}, profile=profile_of(m=entry()), meter=meter)
    message = router.invoke(QUESTION)
    assert message.content == "still answered"
    assert message.response_metadata["energy"]["flags"] == [FLAG_METER_FAILED]
    assert message.response_metadata["routing"]["measured_energy_j"] is None


def _merge(chunks: Any) -> Any:
    total = None
    for chunk in chunks:
        total = chunk if total is None else total + chunk
    return total


# -- issue 17 item 5: after a fallback, the figures side by side are one model's ---------
def test_after_a_fallback_predictions_and_totals_belong_to_the_serving_model() -> None:
    from langchain_energyrouter.callbacks import EnergyCallbackHandler

    tiny = _tiny()["tiny-a"].model_copy()
    models = {"burns": Burns(), "small": tiny}  # router names differ from the provider's model name
    profile = profile_of(burns=entry(accuracy=0.99, energy_j=500.0), small=entry(accuracy=0.1, energy_j=0.5))
    router = EnergyAwareRouter(
        models=models, profile=profile, meter=EstimateMeter(), weights={"accuracy": 1.0}, learn=False
    )
    handler = EnergyCallbackHandler()
    message = router.invoke(QUESTION, config={"callbacks": [handler]})
    routing = message.response_metadata["routing"]
    assert routing["model"] == "burns" and routing["served_by"] == "small"
    small = routing["candidates"]["small"]
    assert (
        routing["predicted_energy_j"]
        == small["predicted_energy_j"]
        == message.response_metadata["energy"]["predicted_energy_j"]
    )
    assert routing["predicted_runtime_s"] == small["predicted_runtime_s"]
    assert routing["predicted_output_tokens"] == small["predicted_output_tokens"]
    assert message.response_metadata["model_name"] != "small"  # the provider's name, as LangSmith expects
    keys = set(handler.energy_j_by_model) | set(handler.overlapped_energy_j_by_model)
    assert keys == {"burns", "small"}  # one key per router candidate, answer and failure alike
