"""EnergyRoutingMiddleware: every step of a real LangChain v1 ``create_agent`` run is routed.

Candidates: a tiny real Hugging Face model on a local pipeline (``tiny-a``, cheap, calls no tools)
and :class:`ScriptedToolChat`, a real ``BaseChatModel`` that calls a tool on the first step and
answers from the tool result on the second. It stands in for a tool-calling endpoint only because
the packaged small models do not emit tool calls.
"""

from __future__ import annotations

import importlib.util
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.callbacks import BaseCallbackHandler, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, Field

from langchain_energyrouter import CostModel, DeviceInfo, EnergyProfile, ModelProfile, NoFeasibleModelError
from langchain_energyrouter.callbacks import EnergyCallbackHandler, get_energy_callback
from langchain_energyrouter.energy import EstimateMeter
from langchain_energyrouter.middleware import EnergyRoutingMiddleware, plain_conversation
from langchain_energyrouter.router import EnergyAwareRouter
from langchain_energyrouter.testing import build_tiny_chat_model, save_tiny_model
from tests.unit_tests.servers import transformers_serve

QUESTION = "What is 6 times 7?"


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


class ScriptedToolChat(BaseChatModel):
    """With tools bound and no tool result yet, calls the first tool with the question's integers;
    otherwise answers with the last tool result. Counts its calls and records what it was sent."""

    calls: int = 0
    seen: list[list[BaseMessage]] = Field(default_factory=list)
    fail: bool = False

    @property
    def _llm_type(self) -> str:
        return "scripted-tool-chat"

    def bind_tools(self, tools: Any, *, tool_choice: Any = None, **kwargs: Any) -> Any:
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.calls += 1
        self.seen.append(list(messages))
        if self.fail:
            raise ConnectionError("endpoint is down")
        tools = kwargs.get("tools")
        results = [m for m in messages if isinstance(m, ToolMessage)]
        if tools and not results:
            function = tools[0]["function"]
            numbers = [int(n) for n in re.findall(r"-?\d+", str(messages[-1].content))]
            args = dict(zip(function["parameters"]["properties"], numbers, strict=False))
            call = {"name": function["name"], "args": args, "id": f"call_{uuid.uuid4().hex[:8]}"}
            message = AIMessage(content="", tool_calls=[call])
        else:
            message = AIMessage(content=f"The answer is {results[-1].content if results else 'unknown'}.")
        return ChatResult(generations=[ChatGeneration(message=message)])


class StartCounter(BaseCallbackHandler):
    """Counts chat model starts: set on one model object, it proves that object ran."""

    def __init__(self) -> None:
        self.starts = 0

    def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
        self.starts += 1


def entry(energy_j: float, accuracy: float) -> ModelProfile:
    return ModelProfile(
        runtime=CostModel(intercept=energy_j / 10, input_tokens=0.0, output_tokens=0.001),
        energy=CostModel(intercept=energy_j, input_tokens=0.0, output_tokens=0.01),
        accuracy=accuracy,
        context_window=1024,
    )


# tiny-a: cheap, less accurate, no tools; tools: costly, accurate, calls tools.
PROFILE = EnergyProfile.new(
    {"tiny-a": entry(0.1, 0.4), "tools": entry(5.0, 0.8), "flaky": entry(0.01, 0.9)},
    device=DeviceInfo(name="test cpu", kind="cpu"),
    energy_method="estimate",
)


@pytest.fixture
def models() -> dict[str, BaseChatModel]:
    tiny = build_tiny_chat_model("tiny-a", hidden_size=32, num_hidden_layers=2, max_new_tokens=8)
    tiny.callbacks = [StartCounter()]
    return {"tiny-a": tiny, "tools": ScriptedToolChat(callbacks=[StartCounter()])}


def starts(model: BaseChatModel) -> int:
    (handler,) = model.callbacks  # type: ignore[misc]
    assert isinstance(handler, StartCounter)
    return handler.starts


def ai_steps(state: dict[str, Any]) -> list[AIMessage]:
    return [m for m in state["messages"] if isinstance(m, AIMessage)]


def middleware(models: dict[str, BaseChatModel], **kwargs: Any) -> EnergyRoutingMiddleware:
    kwargs.setdefault("weights", {"energy": 1.0})
    return EnergyRoutingMiddleware(models=models, profile=PROFILE, local_models=["tiny-a"], **kwargs)


def test_every_step_goes_to_a_tool_model_while_tools_are_bound(models: dict[str, BaseChatModel]) -> None:
    routing = middleware(models)
    agent = create_agent(model=models["tools"], tools=[multiply], middleware=[routing])
    state = agent.invoke({"messages": [HumanMessage(QUESTION)]})

    first, answer = ai_steps(state)
    assert first.tool_calls[0]["name"] == "multiply" and first.tool_calls[0]["args"] == {"a": 6, "b": 7}
    assert answer.content == "The answer is 42."
    for step in (first, answer):
        decision = step.response_metadata["routing"]
        assert decision["model"] == decision["served_by"] == "tools"
        assert "HuggingFacePipeline ignores tools" in decision["excluded"]["tiny-a"]
        assert decision["run_id"] == step.id.removeprefix("lc_run--")  # type: ignore[union-attr]
        energy = step.response_metadata["energy"]
        assert energy["method"] == "none" and energy["energy_j"] is None  # a remote candidate: not metered here
        assert energy["predicted_energy_j"] > 0
        assert decision["measured_runtime_s"] >= 0
        assert step.usage_metadata is not None and step.usage_metadata["total_tokens"] > 0
    assert models["tools"].calls == 2 and starts(models["tools"]) == 2  # type: ignore[attr-defined]
    assert starts(models["tiny-a"]) == 0
    assert routing.router.candidates["tools"] is models["tools"]
    assert routing.router._parts().live.counter.get("tools") == 0  # nothing left in flight


async def test_answer_step_may_go_to_the_cheap_local_model(models: dict[str, BaseChatModel]) -> None:
    routing = middleware(models, answer_steps="any_model")
    agent = create_agent(model=models["tools"], tools=[multiply], middleware=[routing])
    state = await agent.ainvoke({"messages": [HumanMessage(QUESTION)]})

    first, answer = ai_steps(state)
    assert first.response_metadata["routing"]["served_by"] == "tools"  # the tool step: tool models only
    assert set(first.response_metadata["routing"]["excluded"]) == {"tiny-a"}
    decision = answer.response_metadata["routing"]
    assert decision["served_by"] == "tiny-a"  # the answer step: the cheapest under energy weights
    assert decision["excluded"] == {} and set(decision["ranking"]) == {"tiny-a", "tools"}
    energy = answer.response_metadata["energy"]
    assert energy["method"] != "none" and energy["energy_j"] is not None and energy["energy_j"] >= 0
    assert energy["runtime_s"] > 0 and energy["predicted_energy_j"] == pytest.approx(
        0.1 + 0.01 * 8
    )  # intercept + 8 capped tokens
    assert answer.usage_metadata is not None and answer.usage_metadata["output_tokens"] > 0  # counted
    assert decision["generated_tokens"] is not None
    assert answer.response_metadata["model_name"]  # set for usage callbacks
    # The agent's own objects ran: each model's own callbacks saw its calls.
    assert starts(models["tools"]) == 1 and starts(models["tiny-a"]) == 1


class Factors(BaseModel):
    """The two integers of a multiplication question."""

    a: int
    b: int


def test_the_router_as_an_agents_model_gives_a_structured_response(models: dict[str, BaseChatModel]) -> None:
    # create_agent reads model.profile to choose how to ask for structured output: the router's is LangChain's
    # capability profile (its energy profile is energy_profile), so the agent asks through a tool.
    router = EnergyAwareRouter(models=models, profile=PROFILE, local_models=["tiny-a"], weights={"energy": 1.0})
    assert router.profile == {"max_input_tokens": 1024, "tool_calling": True, "structured_output": False}
    assert router.energy_profile is PROFILE
    agent = create_agent(model=router, tools=[], response_format=Factors)
    state = agent.invoke({"messages": [HumanMessage(QUESTION)]})

    assert state["structured_response"] == Factors(a=6, b=7)
    (step,) = ai_steps(state)
    assert step.tool_calls[0]["name"] == "Factors"
    assert step.response_metadata["routing"]["served_by"] == "tools"  # the only candidate that calls tools
    assert "HuggingFacePipeline ignores tools" in step.response_metadata["routing"]["excluded"]["tiny-a"]


def test_the_energy_profile_keyword_and_a_clear_error_for_the_capability_profile(
    models: dict[str, BaseChatModel],
) -> None:
    router = EnergyAwareRouter(models=models, energy_profile=PROFILE, profile={"max_input_tokens": 512})
    assert router.profile == {"max_input_tokens": 512}  # given: kept, not derived
    with pytest.raises(ValueError, match="energy_profile"):
        router.profile = PROFILE  # type: ignore[assignment]
    router.energy_profile = PROFILE.model_copy()  # the energy profile is changed here
    assert router.explain(QUESTION).model in models
    with pytest.raises(ValueError, match="energy_profile"):
        EnergyAwareRouter(models=models, energy_profile=PROFILE, profile=PROFILE)


def test_run_options_reach_each_step(models: dict[str, BaseChatModel]) -> None:
    routing = middleware(models, answer_steps="any_model")
    agent = create_agent(model=models["tiny-a"], tools=[multiply], middleware=[routing])
    config: Any = {"configurable": {"energyrouter_weights": {"accuracy": 1.0}}}
    state = agent.invoke({"messages": [HumanMessage(QUESTION)]}, config=config)
    assert [m.response_metadata["routing"]["served_by"] for m in ai_steps(state)] == ["tools", "tools"]
    assert ai_steps(state)[-1].content == "The answer is 42."
    assert starts(models["tiny-a"]) == 0


def test_a_failing_candidate_falls_back_and_is_reported(models: dict[str, BaseChatModel]) -> None:
    flaky = ScriptedToolChat(fail=True)
    router = EnergyAwareRouter(
        models={**models, "flaky": flaky}, profile=PROFILE, local_models=["tiny-a"], weights={"energy": 1.0}
    )
    routing = EnergyRoutingMiddleware(router)
    assert routing.router is router
    agent = create_agent(model=models["tools"], tools=[multiply], middleware=[routing])
    state = agent.invoke({"messages": [HumanMessage(QUESTION)]})
    for step in ai_steps(state):
        decision = step.response_metadata["routing"]
        assert decision["model"] == "flaky" and decision["served_by"] == "tools"
        assert [(f["model"], f["error_type"]) for f in decision["failures"]] == [("flaky", "ConnectionError")]
    assert flaky.calls == 2
    assert ai_steps(state)[-1].content == "The answer is 42."


def test_shared_router_learns_from_agent_steps(models: dict[str, BaseChatModel]) -> None:
    router = EnergyAwareRouter(models=models, profile=PROFILE, local_models=["tiny-a"], weights={"energy": 1.0})
    routing = EnergyRoutingMiddleware(router, answer_steps="any_model")
    assert routing.router.scheduler is router.scheduler
    before = router.explain([HumanMessage(QUESTION)]).candidates["tiny-a"].predicted_runtime_s
    agent = create_agent(model=models["tools"], tools=[multiply], middleware=[routing])
    for _ in range(3):
        agent.invoke({"messages": [HumanMessage(QUESTION)]})
    after = router.explain([HumanMessage(QUESTION)]).candidates["tiny-a"].predicted_runtime_s
    assert after != before  # the measured answer steps moved tiny-a's runtime prediction


def test_tools_without_a_tool_model_and_bad_arguments_are_clear_errors(models: dict[str, BaseChatModel]) -> None:
    only_local = EnergyRoutingMiddleware(models={"tiny-a": models["tiny-a"]}, profile=PROFILE)
    agent = create_agent(model=models["tiny-a"], tools=[multiply], middleware=[only_local])
    with pytest.raises(NoFeasibleModelError, match="no usable candidate calls tools"):
        agent.invoke({"messages": [HumanMessage(QUESTION)]})
    router = EnergyAwareRouter(models=models, profile=PROFILE)
    with pytest.raises(ValueError, match="either router"):
        EnergyRoutingMiddleware(router, models=models)
    with pytest.raises(ValueError, match="needs router"):
        EnergyRoutingMiddleware(models=models)
    with pytest.raises(ValueError, match="answer_steps"):
        EnergyRoutingMiddleware(router, answer_steps="sometimes")  # type: ignore[arg-type]


def test_plain_conversation_writes_tool_turns_as_text() -> None:
    call = {"name": "multiply", "args": {"a": 6, "b": 7}, "id": "c1"}
    plain = plain_conversation(
        [HumanMessage(QUESTION), AIMessage(content="", tool_calls=[call]), ToolMessage("42", tool_call_id="c1")]
    )
    assert [type(m).__name__ for m in plain] == ["HumanMessage", "AIMessage", "HumanMessage"]
    assert isinstance(plain[1], AIMessage) and not plain[1].tool_calls
    assert plain[1].content == 'Calling multiply({"a": 6, "b": 7})'
    assert plain[2].content == "Result of tool c1: 42"


def test_example_routes_each_step(capsys: pytest.CaptureFixture[str]) -> None:
    path = Path(__file__).resolve().parents[2] / "examples" / "agent_middleware.py"
    spec = importlib.util.spec_from_file_location("example_agent_middleware", path)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    assert example.main([]) == 0
    out = capsys.readouterr().out
    assert "answer_steps=tool_models: answer 'The answer is 42.'" in out
    assert out.count("step 1: endpoint, tool calls ['multiply']") == 2
    assert "step 2: tiny-local, tool calls []" in out


# -- a real engine among the candidates ------------------------------------------------
@pytest.fixture(scope="module")
def engine_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """``transformers serve`` (a real OpenAI-compatible engine) serving a saved tiny model on 127.0.0.1."""
    directory = str(save_tiny_model(tmp_path_factory.mktemp("engine") / "tiny-engine"))
    with transformers_serve(directory) as url:
        yield url, directory


def test_every_step_routed_with_a_real_engine_among_the_candidates(
    models: dict[str, BaseChatModel], engine_url: tuple[str, str]
) -> None:
    from langchain_huggingface import ChatHuggingFace, HuggingFaceEndpoint

    url, directory = engine_url
    engine = ChatHuggingFace(llm=HuggingFaceEndpoint(endpoint_url=url, max_new_tokens=8, task="text-generation"))  # type: ignore[call-arg]
    # ChatHuggingFace sets model_id to the URL, and an URL goes out as model "dummy"; the pinned server wants its path.
    engine.model_id = directory
    profile = EnergyProfile.new(
        {"engine": entry(0.05, 0.5), "tools": entry(5.0, 0.8)},
        device=DeviceInfo(name="test cpu", kind="cpu"),
        energy_method="estimate",
    )
    # The tiny engine model emits no tool calls: only the scripted model is listed as calling tools.
    routing = EnergyRoutingMiddleware(
        models={"engine": engine, "tools": models["tools"]},
        profile=profile,
        tool_models=["tools"],
        answer_steps="any_model",
        weights={"energy": 1.0},
    )
    agent = create_agent(model=engine, tools=[multiply], middleware=[routing])
    state = agent.invoke({"messages": [HumanMessage(QUESTION)]})

    first, answer = ai_steps(state)
    assert first.response_metadata["routing"]["served_by"] == "tools" and first.tool_calls
    assert first.response_metadata["routing"]["excluded"] == {"engine": "cannot call tools: not listed in tool_models"}
    decision = answer.response_metadata["routing"]
    assert decision["served_by"] == decision["model"] == "engine" and decision["failures"] == []
    assert isinstance(answer.content, str) and answer.content
    assert answer.response_metadata["energy"]["method"] == "none"  # spent in the engine's process
    assert answer.usage_metadata is not None and 1 <= answer.usage_metadata["output_tokens"] <= 8  # capped at 8
    assert answer.response_metadata["energy"]["predicted_energy_j"] > 0


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_routed_steps_reach_the_energy_callback(models: dict[str, BaseChatModel], is_async: bool) -> None:
    """The candidate's on_llm_end fires before the middleware attaches energy: the callback saw {} and one
    call without energy per step; the middleware now delivers each step's reading afterwards."""
    routing = middleware(models, answer_steps="any_model", meter=EstimateMeter())
    agent = create_agent(model=models["tools"], tools=[multiply], middleware=[routing])
    handler = EnergyCallbackHandler()
    with get_energy_callback() as cb:
        config: Any = {"callbacks": [handler]}
        if is_async:
            state = await agent.ainvoke({"messages": [HumanMessage(QUESTION)]}, config=config)
        else:
            state = agent.invoke({"messages": [HumanMessage(QUESTION)]}, config=config)
    _tool_step, answer = ai_steps(state)
    assert answer.response_metadata["routing"]["served_by"] == "tiny-a"  # metered locally
    answered_j = answer.response_metadata["energy"]["energy_j"]
    assert answered_j > 0
    for h in (handler, cb):
        assert h.calls_without_energy == 0
        assert sum(h.calls_by_method.values()) == 2  # the tool step (remote, "none") and the answer
        assert h.energy_j_by_model.get("tiny-a", h.overlapped_energy_j_by_model.get("tiny-a")) == {
            "estimate": pytest.approx(answered_j)
        }
        assert [r.candidate for r in h.records] == ["tools", "tiny-a"]
    routing.close()
