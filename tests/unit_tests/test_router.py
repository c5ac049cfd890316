"""EnergyAwareRouter over tiny real Hugging Face models (and test doubles for remote endpoints)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from langchain_core.callbacks import CallbackManagerForLLMRun, get_usage_metadata_callback
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, Field

from langchain_energyrouter import (
    CostModel,
    DeviceInfo,
    EnergyProfile,
    ModelProfile,
    NoFeasibleModelError,
    ProfileError,
    RoutingError,
    UnknownModelError,
    Weights,
    WeightsError,
)
from langchain_energyrouter.callbacks import EnergyCallbackHandler, get_energy_callback
from langchain_energyrouter.energy import EstimateMeter
from langchain_energyrouter.router import EnergyAwareRouter
from langchain_energyrouter.router.candidates import runs_locally as _runs_locally
from langchain_energyrouter.router.tokens import CHARS_PER_TOKEN, TokenCounter, configured_output_cap
from langchain_energyrouter.testing import build_tiny_chat_model, tiny_chat_models


# -- profiles and test doubles ---------------------------------------------------
def entry(
    *,
    runtime_s: float = 0.1,
    energy_j: float = 1.0,
    accuracy: float = 0.5,
    energy_per_input_token_j: float = 0.0,
    context_window: int = 1024,
) -> ModelProfile:
    return ModelProfile(
        runtime=CostModel(intercept=runtime_s, input_tokens=0.0, output_tokens=0.001),
        energy=CostModel(intercept=energy_j, input_tokens=energy_per_input_token_j, output_tokens=0.01),
        accuracy=accuracy,
        context_window=context_window,
    )


def profile_of(**models: ModelProfile) -> EnergyProfile:
    return EnergyProfile.new(models, device=DeviceInfo(name="test cpu", kind="cpu"), energy_method="estimate")


# tiny-a: cheap and less accurate; tiny-b: accurate and costly.
CLASSIC = {
    "tiny-a": entry(runtime_s=0.01, energy_j=0.1, accuracy=0.4),
    "tiny-b": entry(runtime_s=0.05, energy_j=0.5, accuracy=0.8),
}


class ToolChat(BaseChatModel):
    """Stands in for a remote tool-calling endpoint (none can run in unit tests).

    With tools bound and a question last, it calls the first tool with every argument 2;
    otherwise it answers ``"done"``. Streams like an endpoint: text, then a chunk with its
    own usage and ``model_name`` (which the router must not repeat).
    """

    answer: str = "done"
    calls: int = 0
    last_kwargs: dict[str, Any] = Field(default_factory=dict)

    @property
    def _llm_type(self) -> str:
        return "tool-chat"

    def bind_tools(self, tools: Any, *, tool_choice: Any = None, **kwargs: Any) -> Any:
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _reply(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> AIMessage:
        self.calls += 1
        self.last_kwargs = dict(kwargs)
        tools = kwargs.get("tools")
        if tools and not isinstance(messages[-1], ToolMessage):
            function = tools[0]["function"]
            args = {name: 2 for name in function["parameters"]["properties"]}
            return AIMessage(content="", tool_calls=[{"name": function["name"], "args": args, "id": "call_1"}])
        return AIMessage(content=self.answer)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._reply(messages, kwargs))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        reply = self._reply(messages, kwargs)
        for word in reply.text.split(" "):
            yield ChatGenerationChunk(message=AIMessageChunk(content=word))
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="", usage_metadata={"input_tokens": 11, "output_tokens": 3, "total_tokens": 14}
            ),
            generation_info={"model_name": "remote-id", "finish_reason": "stop"},
        )


class Broken(BaseChatModel):
    """Raises ``error`` after streaming ``tokens_first`` tokens (``_generate`` raises at once)."""

    error: Any = RuntimeError
    tokens_first: int = 0

    @property
    def _llm_type(self) -> str:
        return "broken"

    def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        raise self.error("model is down")

    def _stream(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> Any:
        for i in range(self.tokens_first):
            yield ChatGenerationChunk(message=AIMessageChunk(content=f"t{i} "))
        raise self.error("model is down")


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


@pytest.fixture(scope="module")
def tiny() -> dict[str, BaseChatModel]:
    return dict(tiny_chat_models())


def make_router(models: dict[str, BaseChatModel], profile: dict[str, ModelProfile] | None = None, **kwargs: Any):
    profile = profile or {name: CLASSIC.get(name, entry()) for name in models}
    return EnergyAwareRouter(models=models, profile=profile_of(**profile), meter=EstimateMeter(), **kwargs)


QUESTION = [SystemMessage("Answer briefly."), HumanMessage("What is the capital of France?")]


# -- routing ---------------------------------------------------------------------
def test_picks_the_model_the_profile_favours(tiny: dict[str, BaseChatModel]) -> None:
    a_wins = {"tiny-a": entry(energy_j=0.1, accuracy=0.9), "tiny-b": entry(energy_j=0.5, accuracy=0.5)}
    b_wins = {"tiny-a": entry(energy_j=0.5, accuracy=0.5), "tiny-b": entry(energy_j=0.1, accuracy=0.9)}
    for profile, expected in ((a_wins, "tiny-a"), (b_wins, "tiny-b")):
        message = make_router(tiny, profile).invoke(QUESTION)
        assert message.response_metadata["model_name"] == expected
        assert message.response_metadata["routing"]["model"] == expected
        assert message.content  # the real tiny model ran


def test_weights_move_the_choice(tiny: dict[str, BaseChatModel]) -> None:
    router = make_router(tiny, weights=Weights(accuracy=1.0))
    assert router.invoke(QUESTION).response_metadata["model_name"] == "tiny-b"
    assert router.invoke(QUESTION, weights={"energy": 1.0}).response_metadata["model_name"] == "tiny-a"
    assert router.explain(QUESTION, weights=(0, 0, 1)).model == "tiny-a"
    assert make_router(tiny, weights={"energy": 1.0}).invoke(QUESTION).response_metadata["model_name"] == "tiny-a"


def test_longer_prompts_go_to_the_model_whose_cost_grows_slower(tiny: dict[str, BaseChatModel]) -> None:
    # tiny-b is cheaper per call but its energy grows 10x faster per prompt token.
    profile = {
        "tiny-a": entry(energy_j=1.0, energy_per_input_token_j=0.001),
        "tiny-b": entry(energy_j=0.5, energy_per_input_token_j=0.01),
    }
    router = make_router(tiny, profile, weights={"energy": 1.0})
    short = [HumanMessage("Hi")]
    long = [HumanMessage("Explain how an energy aware router picks a language model. " * 10)]
    assert router.invoke(short).response_metadata["model_name"] == "tiny-b"
    message = router.invoke(long)
    assert message.response_metadata["model_name"] == "tiny-a"
    candidates = message.response_metadata["routing"]["candidates"]
    assert candidates["tiny-a"]["input_tokens"] > 100


def test_input_tokens_are_counted_with_each_candidates_own_tokenizer(tiny: dict[str, BaseChatModel]) -> None:
    fake = GenericFakeChatModel(messages=iter([]))
    counter = TokenCounter({**tiny, "fake": fake})
    assert counter.method("tiny-a") == "tokenizer" and counter.method("fake") == "chars/4"
    tokenizer = tiny["tiny-a"].tokenizer  # type: ignore[attr-defined]
    rendered = tokenizer.apply_chat_template(
        [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert counter.count_messages("tiny-a", QUESTION) == len(tokenizer.encode(rendered, add_special_tokens=False))
    text = "Answer briefly.\nWhat is the capital of France?"
    assert counter.count_messages("fake", QUESTION) == -(-len(text) // CHARS_PER_TOKEN)
    # A ToolMessage is outside the tiny chat template's roles: counted, not an error.
    assert counter.count_messages("tiny-a", [*QUESTION, ToolMessage("42", tool_call_id="1")]) > 0


def test_a_models_own_token_counter_is_used() -> None:
    class Counting(GenericFakeChatModel):
        def get_num_tokens_from_messages(self, messages: Any, tools: Any = None) -> int:
            return 1234

    counter = TokenCounter({"c": Counting(messages=iter([]))})
    assert counter.method("c") == "model"
    assert counter.count_messages("c", QUESTION) == 1234


def test_output_cap_reaches_the_local_pipeline(tiny: dict[str, BaseChatModel]) -> None:
    router = make_router(tiny)
    assert configured_output_cap(tiny["tiny-a"]) == 8
    message = router.invoke(QUESTION, max_tokens=3)
    assert message.usage_metadata is not None
    assert message.usage_metadata["output_tokens"] == 3  # tiny models always fill their budget
    assert message.response_metadata["routing"]["max_output_tokens"] == 3
    assert router.explain(QUESTION).max_output_tokens == {"tiny-a": 8, "tiny-b": 8}  # each pipeline's own budget


def test_pipeline_kwargs_reach_local_pipelines_only(tiny: dict[str, BaseChatModel]) -> None:
    remote = ToolChat()
    router = make_router({**tiny, "remote": remote}, {**CLASSIC, "remote": entry()}, local_models=["tiny-a", "tiny-b"])
    local = router.invoke(QUESTION, model="tiny-a", pipeline_kwargs={"max_new_tokens": 2})
    assert local.usage_metadata is not None and local.usage_metadata["output_tokens"] == 2
    router.invoke(QUESTION, model="remote", pipeline_kwargs={"max_new_tokens": 2})
    assert remote.last_kwargs == {"max_tokens": 2}


def test_streaming_flag_routes_invoke_through_the_stream(tiny: dict[str, BaseChatModel]) -> None:
    router = make_router(tiny, streaming=True, weights={"energy": 1.0})
    message = router.invoke(QUESTION)
    assert message.response_metadata["model_name"] == "tiny-a"
    assert message.usage_metadata is not None and message.usage_metadata["output_tokens"] == 8


def test_forced_model_and_unknown_model(tiny: dict[str, BaseChatModel]) -> None:
    router = make_router(tiny, weights={"accuracy": 1.0})
    message = router.invoke(QUESTION, model="tiny-a")
    assert message.response_metadata["model_name"] == "tiny-a"
    assert message.response_metadata["routing"]["forced"] is True
    with pytest.raises(UnknownModelError, match=r"'tiny-z'.*\['tiny-a', 'tiny-b'\]"):
        router.invoke(QUESTION, model="tiny-z")


def test_explain_runs_no_model() -> None:
    router = make_router({"tiny-a": Broken(), "tiny-b": Broken()}, weights={"accuracy": 1.0})
    decision = router.explain(QUESTION)
    assert decision.model == "tiny-b"
    assert decision.ranking == ("tiny-b", "tiny-a")
    assert router.explain("hello", model="tiny-a").forced


# -- construction ------------------------------------------------------------------
def test_construction_errors(tiny: dict[str, BaseChatModel]) -> None:
    with pytest.raises(ProfileError, match=r"'tiny-b'.*Profiled models: \['tiny-a'\].*calibrate"):
        EnergyAwareRouter(models=tiny, profile=profile_of(**{"tiny-a": entry()}))
    with pytest.raises(WeightsError, match=r"negative|invalid"):
        make_router(tiny, weights={"energy": -1})
    with pytest.raises(WeightsError, match="Unknown weight"):
        make_router(tiny, weights={"speed": 1})
    with pytest.raises(ValueError, match="Duplicate model name 'tiny-a'"):
        EnergyAwareRouter(models=[tiny["tiny-a"], tiny["tiny-a"]], profile=profile_of(**CLASSIC))
    with pytest.raises(TypeError, match=r"bind\(\)"):
        make_router({"tiny-a": tiny["tiny-a"].bind(stop=["x"]), "tiny-b": tiny["tiny-b"]})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="not a langchain BaseChatModel"):
        make_router({"tiny-a": object(), "tiny-b": tiny["tiny-b"]})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="at least one model"):
        EnergyAwareRouter(models={}, profile=profile_of(**CLASSIC))
    with pytest.raises(ProfileError, match="does not exist"):
        EnergyAwareRouter(models=tiny, profile="/nonexistent/profile.json")


def test_models_may_be_a_list_named_by_model_id(tiny: dict[str, BaseChatModel]) -> None:
    router = EnergyAwareRouter(models=list(tiny.values()), profile=profile_of(**CLASSIC))
    assert list(router.candidates) == ["tiny-a", "tiny-b"]


def test_identity(tiny: dict[str, BaseChatModel]) -> None:
    router = make_router(tiny)
    params = router._get_ls_params()
    assert params["ls_provider"] == "energyrouter"
    assert params["ls_model_type"] == "chat"
    assert isinstance(params["ls_model_name"], str)
    assert router._get_ls_params(model="tiny-a")["ls_model_name"] == "tiny-a"
    assert router._llm_type == "energy-aware-router"
    assert set(router._identifying_params["models"]) == {"tiny-a", "tiny-b"}


def test_router_import_stays_light() -> None:
    code = (
        "import sys, langchain_energyrouter.router, langchain_energyrouter.router.tokens; "
        "bad = {'pandas', 'statsmodels', 'torch', 'transformers', 'pynvml'} & set(sys.modules); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- metadata ----------------------------------------------------------------------
def test_invoke_metadata_and_usage(tiny: dict[str, BaseChatModel]) -> None:
    message = make_router(tiny, weights={"energy": 1.0}).invoke(QUESTION)
    meta = message.response_metadata
    assert meta["model_name"] == "tiny-a"
    routing, energy = meta["routing"], meta["energy"]
    assert routing["served_by"] == "tiny-a" and routing["failures"] == []
    assert routing["ranking"] == ["tiny-a", "tiny-b"]
    assert energy["method"] == "estimate" and energy["is_estimate"] is True
    assert routing["measured_energy_j"] == energy["energy_j"] and routing["measured_runtime_s"] == energy["runtime_s"]
    assert energy["predicted_energy_j"] == routing["predicted_energy_j"]
    usage = message.usage_metadata
    assert usage is not None
    assert usage["input_tokens"] == routing["candidates"]["tiny-a"]["input_tokens"]
    assert usage["output_tokens"] == 8
    assert usage["total_tokens"] == usage["input_tokens"] + 8


def _merged(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    return total


@pytest.mark.parametrize("weights", [{"energy": 1.0}, {"accuracy": 1.0}])
def test_stream_metadata_and_usage_arrive_once(tiny: dict[str, BaseChatModel], weights: dict[str, float]) -> None:
    router = make_router(
        {**tiny, "remote": ToolChat(answer="streamed from far away")},
        {**CLASSIC, "remote": entry(energy_j=5, accuracy=0.99)},
        local_models=["tiny-a", "tiny-b"],
    )
    chunks = list(router.stream(QUESTION, weights=weights))
    assert sum(1 for c in chunks if c.usage_metadata) == 1
    assert sum(1 for c in chunks if "routing" in c.response_metadata) == 1
    assert sum(1 for c in chunks if "model_name" in c.response_metadata) == 1
    merged = _merged(chunks)
    served = merged.response_metadata["routing"]["served_by"]
    assert served == ("tiny-a" if "energy" in weights else "remote")
    # The provider's own model name is kept (once); the router's choice is under "routing".
    assert merged.response_metadata["model_name"] == ("tiny-a" if served == "tiny-a" else "remote-id")
    assert merged.usage_metadata is not None
    if served == "remote":  # the endpoint's own usage is kept, its model_name dropped
        assert merged.usage_metadata["total_tokens"] == 14
        assert merged.content == "streamedfromfaraway"
        assert merged.response_metadata["energy"]["method"] == "none"
        assert "not_measured_locally" in merged.response_metadata["energy"]["flags"]
    else:
        assert merged.usage_metadata["output_tokens"] == 8
        assert merged.content


async def test_astream_metadata_once_and_ainvoke(tiny: dict[str, BaseChatModel]) -> None:
    router = make_router(tiny, weights={"accuracy": 1.0})
    chunks = [c async for c in router.astream(QUESTION)]
    assert sum(1 for c in chunks if c.usage_metadata) == 1
    merged = _merged(chunks)
    assert merged.response_metadata["model_name"] == "tiny-b"
    assert merged.content
    message = await router.ainvoke(QUESTION, weights={"energy": 1.0})
    assert message.response_metadata["model_name"] == "tiny-a"
    results = await router.abatch([QUESTION, QUESTION])
    assert [m.response_metadata["model_name"] for m in results] == ["tiny-b", "tiny-b"]


def test_usage_callback_counts_each_call_once(tiny: dict[str, BaseChatModel]) -> None:
    router = make_router(tiny, weights={"energy": 1.0})
    with get_usage_metadata_callback() as cb:
        router.invoke(QUESTION)
        list(router.stream(QUESTION))
    assert cb.usage_metadata["tiny-a"]["output_tokens"] == 16


def test_inner_message_objects_are_not_mutated() -> None:
    reply = AIMessage(content="same object every time")
    fake = GenericFakeChatModel(messages=iter([reply, reply]))
    router = make_router({"fake": fake})
    first = router.invoke("hi")
    assert "routing" not in reply.response_metadata and reply.usage_metadata is None
    assert first.response_metadata["model_name"] == "fake"


# -- per-call options --------------------------------------------------------------
def test_configurable_and_bind(tiny: dict[str, BaseChatModel]) -> None:
    router = make_router(tiny, weights={"accuracy": 1.0}, learn=False)  # the profile decides, not measured noise
    energy_first = {"configurable": {"energyrouter_weights": {"energy": 1.0}}}
    assert router.invoke(QUESTION, config=energy_first).response_metadata["model_name"] == "tiny-a"
    forced = {"configurable": {"energyrouter_model": "tiny-a"}}
    assert router.invoke(QUESTION, config=forced).response_metadata["routing"]["forced"] is True
    assert _merged(list(router.stream(QUESTION, config=energy_first))).response_metadata["model_name"] == "tiny-a"
    batch = router.batch([QUESTION, QUESTION], config=energy_first)
    assert [m.response_metadata["model_name"] for m in batch] == ["tiny-a", "tiny-a"]
    # An explicit keyword wins over configurable.
    assert (
        router.invoke(QUESTION, config=energy_first, weights={"accuracy": 1}).response_metadata["model_name"]
        == "tiny-b"
    )
    bound = router.bind(weights={"energy": 1.0})
    assert bound.invoke(QUESTION).response_metadata["model_name"] == "tiny-a"
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | router.bind(constraints={"max_energy_j": 0.3})
    assert chain.invoke({"q": "hello"}).response_metadata["model_name"] == "tiny-a"


async def test_configurable_async(tiny: dict[str, BaseChatModel]) -> None:
    router = make_router(tiny, weights={"accuracy": 1.0})
    config = {"configurable": {"energyrouter_weights": {"energy": 1.0}}}
    message = await router.ainvoke(QUESTION, config=config)  # type: ignore[arg-type]
    assert message.response_metadata["model_name"] == "tiny-a"
    chunks = [c async for c in router.astream(QUESTION, config=config)]  # type: ignore[arg-type]
    assert _merged(chunks).response_metadata["model_name"] == "tiny-a"


def test_infeasible_constraints_raise(tiny: dict[str, BaseChatModel]) -> None:
    router = make_router(tiny)
    with pytest.raises(NoFeasibleModelError, match="max_energy_j"):
        router.invoke(QUESTION, constraints={"max_energy_j": 0.01})


# -- concurrency -------------------------------------------------------------------
def test_32_threads_share_one_router(tiny: dict[str, BaseChatModel]) -> None:
    router = make_router(tiny)
    inputs = [
        (
            [HumanMessage(f"Question number {i}: " + "more words " * (i % 5))],
            [(1, 0, 0), (0, 1, 0), (0.5, 0.5, 0)][i % 3],
        )
        for i in range(64)
    ]
    expected = [router.explain(m, weights=w).model for m, w in inputs]
    barrier = threading.Barrier(32)

    def call(item: tuple[list[BaseMessage], tuple[float, float, float]]) -> tuple[str, str]:
        messages, weights = item
        try:
            barrier.wait(timeout=30)
        except threading.BrokenBarrierError:
            pass
        message = router.invoke(messages, weights=weights)
        return message.response_metadata["model_name"], message.response_metadata["routing"]["model"]

    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(call, inputs))
    assert [served for served, _ in results] == expected
    assert [chosen for _, chosen in results] == expected
    assert len(set(expected)) == 2


# -- fallback ----------------------------------------------------------------------
def test_fallback_to_the_next_ranked_model(tiny: dict[str, BaseChatModel]) -> None:
    models = {"broken": Broken(), "tiny-a": tiny["tiny-a"]}
    profile = {"broken": entry(accuracy=0.99), "tiny-a": entry(accuracy=0.1)}
    router = make_router(models, profile, weights={"accuracy": 1.0})
    message = router.invoke(QUESTION)
    routing = message.response_metadata["routing"]
    assert routing["model"] == "broken" and routing["served_by"] == "tiny-a"
    assert message.response_metadata["model_name"] == "tiny-a"
    [failure] = routing["failures"]
    assert failure["model"] == "broken" and failure["error_type"] == "RuntimeError"
    assert "model is down" in failure["error"]

    with pytest.raises(RuntimeError, match="model is down") as info:
        make_router(models, profile, weights={"accuracy": 1.0}, fallback=False).invoke(QUESTION)
    assert not isinstance(info.value, RoutingError)
    with pytest.raises(RuntimeError, match="model is down"):
        make_router(models, profile, weights={"accuracy": 1.0}, fallback_on=(ValueError,)).invoke(QUESTION)
    with pytest.raises(RuntimeError, match="model is down"):  # forced routes do not fall back
        router.invoke(QUESTION, model="broken")


async def test_fallback_async(tiny: dict[str, BaseChatModel]) -> None:
    models = {"broken": Broken(), "tiny-a": tiny["tiny-a"]}
    router = make_router(models, {"broken": entry(accuracy=0.99), "tiny-a": entry(accuracy=0.1)}, weights=(1, 0, 0))
    message = await router.ainvoke(QUESTION)
    assert message.response_metadata["model_name"] == "tiny-a"
    chunks = [c async for c in router.astream(QUESTION)]
    assert _merged(chunks).response_metadata["routing"]["failures"][0]["model"] == "broken"


def test_all_failing_raises_routing_error_with_each_failure() -> None:
    models = {"down-1": Broken(), "down-2": Broken(error=ValueError)}
    router = make_router(models)
    with pytest.raises(
        RoutingError, match=r"down-1: RuntimeError.*down-2: ValueError|down-2: ValueError.*down-1"
    ) as info:
        router.invoke(QUESTION)
    assert set(info.value.failures) == {"down-1", "down-2"}
    with pytest.raises(RoutingError):
        list(router.stream(QUESTION))


def test_stream_falls_back_only_before_the_first_token(tiny: dict[str, BaseChatModel]) -> None:
    profile = {"broken": entry(accuracy=0.99), "tiny-a": entry(accuracy=0.1)}
    early = make_router({"broken": Broken(tokens_first=0), "tiny-a": tiny["tiny-a"]}, profile, weights=(1, 0, 0))
    merged = _merged(list(early.stream(QUESTION)))
    assert merged.response_metadata["model_name"] == "tiny-a"
    assert merged.response_metadata["routing"]["failures"][0]["model"] == "broken"

    late = make_router({"broken": Broken(tokens_first=2), "tiny-a": tiny["tiny-a"]}, profile, weights=(1, 0, 0))
    received: list[str] = []
    with pytest.raises(RuntimeError, match="model is down"):
        for chunk in late.stream(QUESTION):
            received.append(str(chunk.content))
    assert received == ["t0 ", "t1 "]


def _failing_tiny_model(name: str) -> BaseChatModel:
    chat = build_tiny_chat_model(name)

    def generate(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("CUDA out of memory (injected)")

    chat.llm.pipeline.model.generate = generate  # type: ignore[attr-defined]
    return chat


def test_failure_in_the_streaming_thread_surfaces(tiny: dict[str, BaseChatModel]) -> None:
    # langchain-huggingface's own _stream would block 60 s here and then raise queue.Empty.
    failing = _failing_tiny_model("tiny-a")
    router = make_router({"tiny-a": failing, "tiny-b": tiny["tiny-b"]}, weights={"energy": 1.0}, fallback=False)
    with pytest.raises(RuntimeError, match="injected"):
        list(router.stream(QUESTION))
    # With fallback on, the generation failure (before any token) moves the stream to tiny-b.
    router = make_router({"tiny-a": failing, "tiny-b": tiny["tiny-b"]}, weights={"energy": 1.0})
    merged = _merged(list(router.stream(QUESTION)))
    assert merged.response_metadata["model_name"] == "tiny-b"
    assert "injected" in merged.response_metadata["routing"]["failures"][0]["error"]


async def test_failure_in_the_streaming_thread_surfaces_async() -> None:
    router = make_router({"tiny-a": _failing_tiny_model("tiny-a")}, fallback=False)
    with pytest.raises(RuntimeError, match="injected"):
        _ = [c async for c in router.astream(QUESTION)]
    with pytest.raises(RuntimeError, match="injected"):
        await router.ainvoke(QUESTION)


def test_a_stream_abandoned_early_ends_cleanly(tiny: dict[str, BaseChatModel]) -> None:
    router = make_router(tiny)
    stream = router.stream(QUESTION)
    next(stream)
    stream.close()
    assert router.invoke(QUESTION).content  # the router still works


# -- tools -------------------------------------------------------------------------
def tool_router(tiny: dict[str, BaseChatModel], **kwargs: Any) -> EnergyAwareRouter:
    return make_router(
        {**tiny, "remote": ToolChat()},
        {**CLASSIC, "remote": entry(energy_j=50.0, accuracy=0.6)},
        local_models=["tiny-a", "tiny-b"],
        **kwargs,
    )


def test_tool_calls_route_only_to_tool_capable_models(tiny: dict[str, BaseChatModel]) -> None:
    router = tool_router(tiny, weights={"energy": 1.0})
    assert router.invoke(QUESTION).response_metadata["model_name"] == "tiny-a"  # no tools: cheapest
    message = router.bind_tools([multiply]).invoke([HumanMessage("What is 2 times 2?")])
    assert message.response_metadata["model_name"] == "remote"
    assert message.tool_calls[0]["name"] == "multiply" and message.tool_calls[0]["args"] == {"a": 2, "b": 2}
    excluded = message.response_metadata["routing"]["excluded"]
    assert set(excluded) == {"tiny-a", "tiny-b"}
    assert "HuggingFacePipeline ignores tools" in excluded["tiny-a"]
    assert message.response_metadata["energy"]["method"] == "none"
    assert message.response_metadata["energy"]["energy_j"] is None
    streamed = _merged(list(router.bind_tools([multiply], tool_choice="multiply").stream("2 times 2?")))
    assert streamed.response_metadata["routing"]["served_by"] == "remote"
    assert streamed.response_metadata["model_name"] == "remote-id"  # the provider's name, kept


def test_structured_output_through_the_router(tiny: dict[str, BaseChatModel]) -> None:
    class Product(BaseModel):
        """A product of two integers."""

        a: int
        b: int

    structured = tool_router(tiny).with_structured_output(Product)
    assert structured.invoke("Multiply 2 by 2") == Product(a=2, b=2)


def test_tools_without_a_capable_model_is_a_clear_error(tiny: dict[str, BaseChatModel]) -> None:
    with pytest.raises(NoFeasibleModelError, match=r"no usable candidate calls tools.*HuggingFacePipeline"):
        make_router(tiny).bind_tools([multiply]).invoke(QUESTION)
    with pytest.raises(NoFeasibleModelError, match="tiny-a"):
        tool_router(tiny).bind_tools([multiply]).invoke(QUESTION, model="tiny-a")


def test_endpoint_backed_models_are_not_metered_locally(tiny: dict[str, BaseChatModel]) -> None:
    from langchain_huggingface import ChatHuggingFace, HuggingFaceEndpoint

    endpoint = ChatHuggingFace(llm=HuggingFaceEndpoint(endpoint_url="http://127.0.0.1:9", task="text-generation"))
    assert not _runs_locally(endpoint)
    assert _runs_locally(tiny["tiny-a"])
    assert _runs_locally(GenericFakeChatModel(messages=iter([])))


# -- energy callback: one record per LLM call ----------------------------------------
async def test_energy_callback_records_each_llm_call_once(tiny: dict[str, BaseChatModel]) -> None:
    from langchain.agents import create_agent

    router = tool_router(tiny, weights={"energy": 1.0})
    handler = EnergyCallbackHandler()
    config = {"callbacks": [handler]}
    router.invoke(QUESTION, config=config)  # type: ignore[arg-type]
    list(router.stream(QUESTION, config=config))  # type: ignore[arg-type]
    await router.ainvoke(QUESTION, config=config)  # type: ignore[arg-type]
    _ = [c async for c in router.astream(QUESTION, config=config)]  # type: ignore[arg-type]
    router.batch([QUESTION, QUESTION], config=config)  # type: ignore[arg-type]
    assert len(handler.records) == 6
    assert {r.model_name for r in handler.records} == {"tiny-a"}
    assert handler.calls_without_energy == 0

    agent = create_agent(model=router, tools=[multiply])
    with get_energy_callback() as cb:
        state = await asyncio.to_thread(agent.invoke, {"messages": [HumanMessage("What is 2 times 2?")]})
    assert state["messages"][-1].content == "done"
    assert [r.model_name for r in cb.records] == ["remote", "remote"]  # tool call, then the answer
    assert [r.reading.method for r in cb.records] == ["none", "none"]
