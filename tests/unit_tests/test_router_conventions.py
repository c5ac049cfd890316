"""LangChain conventions the router keeps: cache, configurable keys, settings, model names, rate limits.

Issue 12 items 6 (cache replays no joules; complete identifying params),
10 (namespaced ``configurable`` keys), 11 (settings assigned after
construction apply; ``model_validate`` / ``model_construct`` work), 15 (the
provider's model name is kept) and 17 (candidates' rate limiters).
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import pytest
from langchain_core.caches import InMemoryCache
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.globals import get_llm_cache, set_llm_cache
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.rate_limiters import InMemoryRateLimiter
from langchain_core.runnables import RunnableLambda

from langchain_energyrouter import CostModel, DeviceInfo, EnergyProfile, ModelProfile
from langchain_energyrouter.callbacks import EnergyCallbackHandler
from langchain_energyrouter.energy import EstimateMeter
from langchain_energyrouter.router import EnergyAwareRouter
from langchain_energyrouter.testing import tiny_chat_models

QUESTION = [HumanMessage("What is the capital of France?")]


@lru_cache(maxsize=1)
def _tiny() -> dict[str, BaseChatModel]:
    return dict(tiny_chat_models())


def entry(accuracy: float, energy_j: float) -> ModelProfile:
    return ModelProfile(
        runtime=CostModel(intercept=0.01, input_tokens=0.0, output_tokens=0.001),
        energy=CostModel(intercept=energy_j, input_tokens=0.0, output_tokens=0.01),
        accuracy=accuracy,
        context_window=1024,
    )


# tiny-a: cheap, less accurate; tiny-b: accurate, costly.
PROFILE = EnergyProfile.new(
    {"tiny-a": entry(0.4, 0.1), "tiny-b": entry(0.8, 0.5)},
    device=DeviceInfo(name="test", kind="cpu"),
    energy_method="estimate",
)


def make_router(**kwargs: Any) -> EnergyAwareRouter:
    kwargs.setdefault("learn", False)  # these tests are about options, not about what the router learns
    return EnergyAwareRouter(models=_tiny(), profile=PROFILE, meter=EstimateMeter(), **kwargs)


class Provider(BaseChatModel):
    """Stands in for a remote provider that names its model in the answer, as real endpoints do."""

    @property
    def _llm_type(self) -> str:
        return "provider"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        message = AIMessage(content="hello", response_metadata={"model_name": "provider-model-2025-01"})
        return ChatResult(generations=[ChatGeneration(message=message)], llm_output={"model_name": "provider-model"})


class CountingLimiter(InMemoryRateLimiter):
    """The real in-memory limiter, counting its acquisitions."""

    acquired: int = 0

    def acquire(self, *, blocking: bool = True) -> bool:
        self.acquired += 1
        return super().acquire(blocking=blocking)

    async def aacquire(self, *, blocking: bool = True) -> bool:
        self.acquired += 1
        return await super().aacquire(blocking=blocking)


@pytest.fixture
def global_cache() -> Iterator[InMemoryCache]:
    previous = get_llm_cache()
    cache = InMemoryCache()
    set_llm_cache(cache)
    try:
        yield cache
    finally:
        set_llm_cache(previous)


# -- item 6: cache --------------------------------------------------------------------
def test_a_cache_hit_is_labelled_as_nothing_measured(
    global_cache: InMemoryCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replayed answer ran nothing: method "none" (flag cache_hit), so an NVML deployment's totals stay one
    method (labelled "estimate", it made total_energy_j() raise for mixing methods)."""
    from langchain_energyrouter.energy.nvml import NvmlCounterMeter
    from tests.unit_tests.test_energy_nvml import FakeGpu, install, make_fake_pynvml

    install(monkeypatch, make_fake_pynvml([FakeGpu(uuid="GPU-aaaa", pci_bus_id="00000000:17:00.0")]))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with NvmlCounterMeter(devices=[0]) as meter:
        router = EnergyAwareRouter(models=_tiny(), profile=PROFILE, meter=meter, learn=False)
        handler = EnergyCallbackHandler()
        first = router.invoke(QUESTION, config={"callbacks": [handler]})
        second = router.invoke(QUESTION, config={"callbacks": [handler]})
    assert second.content == first.content  # replayed from the cache
    assert first.response_metadata["energy"]["method"] == "nvml_counter"
    energy = second.response_metadata["energy"]
    assert energy["method"] == "none" and energy["energy_j"] is None and energy["flags"] == ["cache_hit"]
    routing = second.response_metadata["routing"]
    assert routing["cache_hit"] is True and routing["failures"] == [] and routing["measured_energy_j"] is None
    assert handler.calls_by_method == {"nvml_counter": 1, "none": 1}
    assert handler.total_energy_j() == handler.total_energy_j(method="nvml_counter")


def test_identifying_params_tell_differently_configured_routers_apart() -> None:
    base = make_router()._get_llm_string()
    for settings in ({"constraints": {"max_energy_j": 5.0}}, {"task_type": "qa"}, {"max_tokens": 3}):
        assert make_router(**settings)._get_llm_string() != base, settings
    other_profile = EnergyProfile.new(
        {"tiny-a": entry(0.4, 0.2), "tiny-b": entry(0.8, 0.5)},
        device=DeviceInfo(name="test", kind="cpu"),
        energy_method="estimate",
    )
    assert EnergyAwareRouter(models=_tiny(), profile=other_profile)._get_llm_string() != base
    ids = make_router()._identifying_params["models"]
    assert ids["tiny-a"]["model"] == "tiny-a" and ids["tiny-a"]["type"] == _tiny()["tiny-a"]._llm_type


# -- item 10: configurable keys ---------------------------------------------------------
def test_a_graphs_own_model_key_does_not_reach_the_router() -> None:
    router = make_router(weights={"accuracy": 1.0})
    message = router.invoke(QUESTION, config={"configurable": {"model": "openai:gpt-4o-mini"}})
    assert message.response_metadata["routing"]["served_by"] == "tiny-b"
    assert message.response_metadata["routing"]["forced"] is False


def test_prefixed_configurable_keys_reach_every_entry_point() -> None:
    router = make_router(weights={"accuracy": 1.0})
    config: Any = {"configurable": {"energyrouter_weights": {"energy": 1.0}}}
    assert router.invoke(QUESTION, config=config).response_metadata["routing"]["served_by"] == "tiny-a"
    forced: Any = {"configurable": {"energyrouter_model": "tiny-a", "energyrouter_task_type": "qa"}}
    routing = router.invoke(QUESTION, config=forced).response_metadata["routing"]
    assert routing["forced"] is True and routing["task_type"] == "qa"

    # generate() and an argument-less invoke inside a runnable (a LangGraph node) see the ambient config.
    def node(messages: list[BaseMessage]) -> list[str]:
        generated = router.generate([messages]).generations[0][0]
        invoked = router.invoke(messages)
        return [
            generated.message.response_metadata["routing"]["served_by"],
            invoked.response_metadata["routing"]["served_by"],
        ]  # type: ignore[attr-defined]

    assert RunnableLambda(node).invoke(QUESTION, config=config) == ["tiny-a", "tiny-a"]
    # Another router in the same graph reads its own prefix.
    second = make_router(weights={"accuracy": 1.0}, config_prefix="router2")
    assert second.invoke(QUESTION, config=config).response_metadata["routing"]["served_by"] == "tiny-b"


# -- item 11: settings after construction -------------------------------------------------
def test_assigned_settings_take_effect() -> None:
    router = make_router(weights={"accuracy": 1.0})
    assert router.explain(QUESTION).model == "tiny-b"
    router.weights = {"energy": 1.0}  # type: ignore[assignment]
    assert router.explain(QUESTION).model == "tiny-a"
    assert router.invoke(QUESTION).response_metadata["routing"]["served_by"] == "tiny-a"
    router.constraints = {"min_accuracy": 0.7}  # type: ignore[assignment]
    assert router.explain(QUESTION).model == "tiny-b"
    with pytest.raises(ValueError, match="Unknown weight"):
        router.weights = {"speed": 1.0}  # type: ignore[assignment]
    assert router.explain(QUESTION).weights.energy == 1.0  # the failed assignment changed nothing


def test_the_parts_are_rebuilt_only_when_the_routers_own_settings_change(monkeypatch: pytest.MonkeyPatch) -> None:
    from langchain_energyrouter.router import parts

    built = []
    monkeypatch.setattr(parts.RouterParts, "__init__", _counting(parts.RouterParts.__init__, built))
    router = make_router()
    assert len(built) == 1  # LangChain's model_post_init assigns metadata: no second build
    rt = router._parts()
    router.metadata = {"team": "search"}
    router.tags = ["routed"]
    assert router._parts() is rt and len(built) == 1
    router.weights = {"energy": 1.0}  # type: ignore[assignment]
    assert router._parts() is not rt and len(built) == 2
    assert router.explain(QUESTION).model == "tiny-a"


def _counting(init: Any, calls: list[object]) -> Any:
    def counted(self: Any, *args: Any, **kwargs: Any) -> None:
        calls.append(self)
        init(self, *args, **kwargs)

    return counted


def test_a_model_copy_routes_by_its_own_settings_and_leaves_the_original_alone() -> None:
    router = make_router(weights={"energy": 1.0})
    copy = router.model_copy(update={"weights": {"accuracy": 1.0}, "max_tokens": 8})
    assert router.explain(QUESTION).model == "tiny-a" and copy.explain(QUESTION).model == "tiny-b"
    assert copy._get_invocation_params()["max_tokens"] == 8  # its own identity: cache keys and traces
    assert router._get_invocation_params()["max_tokens"] is None
    assert copy.invoke(QUESTION).response_metadata["routing"]["served_by"] == "tiny-b"
    assert router.invoke(QUESTION).response_metadata["routing"]["served_by"] == "tiny-a"


def test_model_validate_and_model_construct_routers_work() -> None:
    validated = EnergyAwareRouter.model_validate({"models": _tiny(), "profile": PROFILE, "weights": {"energy": 1}})
    assert validated.invoke(QUESTION).response_metadata["routing"]["served_by"] == "tiny-a"
    constructed = EnergyAwareRouter.model_construct(models=_tiny(), profile=PROFILE, weights={"accuracy": 1})
    assert constructed.invoke(QUESTION).response_metadata["routing"]["served_by"] == "tiny-b"


# -- item 15: model names -----------------------------------------------------------------
def test_the_providers_model_name_is_kept() -> None:
    profile = EnergyProfile.new(
        {"alias": entry(0.5, 1.0)}, device=DeviceInfo(name="test", kind="cpu"), energy_method="estimate"
    )
    router = EnergyAwareRouter(models={"alias": Provider()}, profile=profile)
    message = router.invoke(QUESTION)
    assert message.response_metadata["model_name"] == "provider-model-2025-01"
    assert message.response_metadata["routing"]["served_by"] == "alias"
    streamed = list(router.stream(QUESTION))
    assert [c.response_metadata.get("model_name") for c in streamed if c.response_metadata.get("model_name")] == [
        "provider-model-2025-01"
    ]
    # Local candidates are named by their model_id; ls_model_name is a real name, never a list of aliases.
    assert "|" not in make_router()._get_ls_params()["ls_model_name"]
    named = EnergyAwareRouter(models={"small": _tiny()["tiny-a"], "tiny-b": _tiny()["tiny-b"]}, profile=PROFILE_ALIASED)
    assert named._get_ls_params(model="small")["ls_model_name"] == "tiny-a"
    assert named.invoke(QUESTION, model="small").response_metadata["model_name"] == "tiny-a"


PROFILE_ALIASED = EnergyProfile.new(
    {"small": entry(0.4, 0.1), "tiny-b": entry(0.8, 0.5)},
    device=DeviceInfo(name="test", kind="cpu"),
    energy_method="estimate",
)


# -- item 17: rate limiters -----------------------------------------------------------------
async def test_candidates_rate_limiters_are_honoured() -> None:
    models = tiny_chat_models()
    limiter = CountingLimiter(requests_per_second=1000, check_every_n_seconds=0.001, max_bucket_size=10)
    models["tiny-a"].rate_limiter = limiter
    router = EnergyAwareRouter(models=models, profile=PROFILE, meter=EstimateMeter(), weights={"energy": 1.0})
    router.invoke(QUESTION)
    list(router.stream(QUESTION))
    await router.ainvoke(QUESTION)
    _ = [c async for c in router.astream(QUESTION)]
    assert limiter.acquired == 4
    router.invoke(QUESTION, model="tiny-b")  # another candidate: its own (absent) limiter
    assert limiter.acquired == 4
