"""``EnergyRoutingMiddleware``: route every step of a LangChain v1 agent with the router's scheduler.

An agent built with ``create_agent(model, tools, middleware=[EnergyRoutingMiddleware(...)])`` keeps
its own chat models: per model call the middleware asks the
:class:`~langchain_energyrouter.router.EnergyAwareRouter`'s scheduler which candidate should serve
this step, overrides the request's model with it (``request.override(model=...)``) and lets the agent
run it as usual, so the candidate's own callbacks, cache and rate limiter apply. The call is
metered with the candidate's meter and counted in flight, its measurement feeds the router's
learning, and the answer carries the same metadata as a router answer::

    response_metadata["routing"]   Decision.as_dict() plus served_by, run_id, failures,
                                   measured_energy_j, measured_runtime_s, generated_tokens
    response_metadata["energy"]    EnergyReading.as_metadata() plus predicted_energy_j, predicted_runtime_s
    usage_metadata                 the candidate's own usage, else counted with its tokenizer

The candidate's ``on_llm_end`` fires before that metadata exists, so the middleware then dispatches it as a
LangChain custom event (``energyrouter_energy``) for the step's run; the energy callbacks
(:class:`~langchain_energyrouter.callbacks.EnergyCallbackHandler`, ``get_energy_callback()``) record it.

Steps with tools bound go only to candidates that call tools. With ``answer_steps="any_model"``,
a step that follows a tool result (usually the agent's answer) may go to any candidate: one that
cannot call tools gets the step without tools and with the tool turns written out as plain text
(a local pipeline's chat template knows no tool messages); the agent then ends with its answer.

Per-run routing options work as for the router: ``agent.invoke(..., config={"configurable":
{"energyrouter_weights": {"energy": 1.0}}})`` (keys ``<config_prefix>_<option>``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.callbacks.manager import adispatch_custom_event, dispatch_custom_event
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatResult
from langchain_core.runnables.config import run_in_executor
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_core.utils.utils import LC_ID_PREFIX

try:
    from langchain.agents.middleware.types import AgentMiddleware, ExtendedModelResponse, ModelRequest, ModelResponse
except ImportError as err:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "EnergyRoutingMiddleware needs LangChain v1 agents (the `langchain` package): "
        "pip install 'langchain-energyrouter[agents]'."
    ) from err

from langchain_energyrouter.energy.base import ENERGY_EVENT, EnergyReading
from langchain_energyrouter.router import EnergyAwareRouter
from langchain_energyrouter.router.call import RoutedCall
from langchain_energyrouter.router.candidates import local_pipeline
from langchain_energyrouter.router.tokens import message_text

__all__ = ["EnergyRoutingMiddleware", "plain_conversation"]

logger = logging.getLogger(__name__)

_RUN_ID_PREFIX = f"{LC_ID_PREFIX}-"
"""LangChain names an answer ``lc_run--<run id>``: the model call's run id follows this prefix."""

_CAP_KEYS = ("max_tokens", "max_new_tokens")


def _tool_turn(message: BaseMessage) -> bool:
    return isinstance(message, ToolMessage) or (isinstance(message, AIMessage) and bool(message.tool_calls))


def plain_conversation(messages: list[AnyMessage]) -> list[AnyMessage]:
    """``messages`` with tool calls and tool results written as text, for a model that knows no tools."""
    plain: list[AnyMessage] = []
    for message in messages:
        if isinstance(message, ToolMessage):
            plain.append(
                HumanMessage(f"Result of tool {message.name or message.tool_call_id}: {message_text(message)}")
            )
        elif isinstance(message, AIMessage) and message.tool_calls:
            calls = "; ".join(f"{c['name']}({json.dumps(c['args'], default=str)})" for c in message.tool_calls)
            text = message.text  # its words only (message_text also renders the tool calls)
            plain.append(AIMessage(content=f"{text}\nCalling {calls}" if text else f"Calling {calls}"))
        else:
            plain.append(message)
    return plain


class _SyncInThread(BaseChatModel):
    """A local-pipeline ``ChatHuggingFace`` for async agents: its ``_agenerate`` raises, so its sync
    ``_generate`` runs in a thread. The run carries the model's own callbacks, tags and metadata."""

    inner: BaseChatModel

    @property
    def _llm_type(self) -> str:
        return self.inner._llm_type

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self.inner._generate(messages, stop=stop, run_manager=run_manager, **kwargs)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        sync_manager = run_manager.get_sync() if run_manager is not None else None
        return await run_in_executor(None, self._generate, messages, stop, sync_manager, **kwargs)


class EnergyRoutingMiddleware(AgentMiddleware):
    """Agent middleware that picks each step's model with an :class:`EnergyAwareRouter`'s scheduler.

    Example:
        ```python
        from langchain.agents import create_agent

        routing = EnergyRoutingMiddleware(
            models={"tiny": local_chat, "remote": endpoint_chat}, profile="profile.json", weights={"energy": 1.0}
        )
        agent = create_agent(model=endpoint_chat, tools=[multiply], middleware=[routing])
        state = agent.invoke({"messages": [("user", "What is 6 times 7?")]})
        state["messages"][-1].response_metadata["routing"]["served_by"]
        ```

    Args:
        router: an existing router whose candidates, scheduler, token counter, meters, learning and
            state store the middleware shares (its weights, constraints and fallback settings apply).
        models: name -> chat model, when no ``router`` is given (the agent's own model objects).
        profile: the energy profile of ``models`` (an :class:`~langchain_energyrouter.profile.EnergyProfile`
            or the path of one).
        answer_steps: ``"tool_models"``: every step with tools bound goes to a candidate that calls tools;
            ``"any_model"``: a step right after a tool result may go to any candidate (see the module doc).
        **router_options: further :class:`EnergyAwareRouter` settings (``weights``, ``constraints``,
            ``task_type``, ``meter``, ``state_store``, ...), when no ``router`` is given.

    Raises:
        ValueError: both or neither of ``router`` and ``models``/``profile``, or a bad ``answer_steps``.
        TypeError, ProfileError, WeightsError: as :class:`EnergyAwareRouter` raises them.
    """

    def __init__(
        self,
        router: EnergyAwareRouter | None = None,
        *,
        models: Mapping[str, BaseChatModel] | None = None,
        profile: Any = None,
        answer_steps: Literal["tool_models", "any_model"] = "tool_models",
        **router_options: Any,
    ) -> None:
        if answer_steps not in ("tool_models", "any_model"):
            raise ValueError(f"answer_steps must be 'tool_models' or 'any_model', got {answer_steps!r}.")
        if router is not None:
            if models is not None or profile is not None or router_options:
                raise ValueError(
                    "Pass either router= (its settings apply) or models= and profile= (and router options), "
                    f"not both; got router and {sorted([*router_options, *(['models'] if models else [])])}."
                )
            self._owns_router = False
        else:
            if models is None or profile is None:
                raise ValueError(
                    "EnergyRoutingMiddleware needs router=EnergyAwareRouter(...) or models={name: chat_model} "
                    "and profile=<EnergyProfile or path>."
                )
            router = EnergyAwareRouter(models=dict(models), energy_profile=profile, **router_options)
            self._owns_router = True
        self.router = router
        self.answer_steps = answer_steps

    @property
    def name(self) -> str:
        """The middleware's name in the agent graph."""
        return "EnergyRoutingMiddleware"

    def close(self) -> None:
        """Close the meters and state store of a router built here (a router passed in is left to its owner)."""
        if self._owns_router:
            self.router.close()

    # -- one step --------------------------------------------------------------------
    def _plan(self, request: ModelRequest) -> RoutedCall:
        """The routed call of this step (the router's own: token counts, exclusions, load, learning)."""
        messages: list[BaseMessage] = list(request.messages)
        if request.system_message is not None:
            messages.insert(0, request.system_message)
        kwargs: dict[str, Any] = {k: request.model_settings[k] for k in _CAP_KEYS if k in request.model_settings}
        tools = [convert_to_openai_tool(t) for t in request.tools]
        answer_step = (
            self.answer_steps == "any_model"
            and request.response_format is None
            and bool(request.messages)
            and isinstance(request.messages[-1], ToolMessage)
        )
        if tools and not answer_step:
            kwargs["tools"] = tools
        return self.router.plan(messages, **kwargs)

    @staticmethod
    def _request_for(request: ModelRequest, call: RoutedCall, name: str, *, is_async: bool = False) -> ModelRequest:
        """The step as candidate ``name`` gets it: its own model; no tool turns for one that calls no tools."""
        model = call.candidates[name]
        if is_async and local_pipeline(model) is not None:
            model = _SyncInThread(inner=model, callbacks=model.callbacks, tags=model.tags, metadata=model.metadata)
        if not call.calls_tools(name) and (request.tools or any(_tool_turn(m) for m in request.messages)):
            # Only on an answer step (tool steps exclude it): answer in plain text from the tool results.
            plain = plain_conversation(request.messages)
            return request.override(model=model, tools=[], tool_choice=None, messages=plain)
        return request.override(model=model)

    @staticmethod
    def _finish(call: RoutedCall, name: str, response: Any, reading: EnergyReading) -> Any:
        """``response`` with the routing and energy metadata on its answer; the measurement is learned from."""
        extended = response if isinstance(response, ExtendedModelResponse) else None
        inner: ModelResponse = extended.model_response if extended is not None else response
        result = list(inner.result)
        for index, message in enumerate(result):
            if not isinstance(message, AIMessage):
                continue
            if isinstance(message.id, str) and message.id.startswith(_RUN_ID_PREFIX):
                call.run_id = message.id[len(_RUN_ID_PREFIX) :]
            metadata, usage = call.metadata(name, reading, message.response_metadata.get("model_name"))
            text = message_text(message)
            counted = usage(message.usage_metadata, text)  # type: ignore[arg-type]
            metadata["routing"]["generated_tokens"] = call.learn(name, reading, counted, text)
            # A copy: fake and cached models hand out the same message object every call.
            result[index] = message.model_copy(
                update={"response_metadata": {**message.response_metadata, **metadata}, "usage_metadata": counted}
            )
            break
        routed = ModelResponse(result=result, structured_response=inner.structured_response)
        if extended is not None:
            return ExtendedModelResponse(model_response=routed, command=extended.command)
        return routed

    def wrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]
    ) -> ModelResponse | AIMessage | ExtendedModelResponse:
        """Route this step, run it on the chosen candidate (falling back down the ranking on errors)."""
        call = self._plan(request)
        for name in call.order:
            attempt = call.attempt(name)
            if attempt is None:
                continue
            try:
                response = handler(self._request_for(request, call, name))
            except BaseException as err:
                if not call.failed(name, err, attempt.end()):
                    raise
                continue
            finished = self._finish(call, name, response, attempt.end())
            event = _energy_event(call, finished)
            if event is not None:
                try:
                    dispatch_custom_event(ENERGY_EVENT, event)
                except RuntimeError as err:  # no parent run (called outside a runnable): nobody to tell
                    logger.debug("Energy event not dispatched: %s", err)
            return finished  # type: ignore[no-any-return]
        raise call.all_failed()

    async def awrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], Awaitable[ModelResponse]]
    ) -> ModelResponse | AIMessage | ExtendedModelResponse:
        """:meth:`wrap_model_call` for async agents."""
        call = self._plan(request)
        for name in call.order:
            attempt = call.attempt(name)
            if attempt is None:
                continue
            try:
                response = await handler(self._request_for(request, call, name, is_async=True))
            except BaseException as err:
                if not call.failed(name, err, attempt.end()):
                    raise
                continue
            finished = self._finish(call, name, response, attempt.end())
            event = _energy_event(call, finished)
            if event is not None:
                try:
                    await adispatch_custom_event(ENERGY_EVENT, event)
                except RuntimeError as err:  # no parent run (called outside a runnable): nobody to tell
                    logger.debug("Energy event not dispatched: %s", err)
            return finished  # type: ignore[no-any-return]
        raise call.all_failed()


def _energy_event(call: RoutedCall, response: Any) -> dict[str, Any] | None:
    """The :data:`ENERGY_EVENT` data of a finished step: the candidate's ``on_llm_end`` fired before the
    metadata was attached, so energy callbacks hear of it this way."""
    inner = response.model_response if isinstance(response, ExtendedModelResponse) else response
    for message in inner.result:
        if isinstance(message, AIMessage) and "energy" in message.response_metadata:
            return {"run_id": call.run_id, "message": message}
    return None
