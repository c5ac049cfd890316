"""``EnergyAwareRouter``: a LangChain chat model that routes each call to one of its models.

Per call the router counts the prompt's tokens with each candidate's own
tokenizer (:mod:`langchain_energyrouter.tokens`), asks the
:class:`~langchain_energyrouter.scheduler.Scheduler` for a decision, and runs
the chosen model inside an energy-meter window. It is the *one* LLM run of the
call: it calls the candidate's ``_generate`` / ``_agenerate`` / ``_stream`` /
``_astream`` directly with its own run manager, so callbacks see one start and
one end, tokens once and usage once. (The candidate's own callbacks, cache and
rate limiter are bypassed; the routed model is named in the metadata.)

Every result carries::

    response_metadata["model_name"]  the model that produced the answer
    response_metadata["routing"]     Decision.as_dict() plus
        served_by            the model that answered (differs from "model" after a fallback)
        failures             [{model, error_type, error, runtime_s}] of candidates that raised first
        measured_energy_j    the meter's joules (None when not measured locally)
        measured_runtime_s   the meter's wall time in seconds
    response_metadata["energy"]      EnergyReading.as_metadata() plus
        predicted_energy_j, predicted_runtime_s   the profile's prediction for the model that answered
    usage_metadata                   the candidate's own usage, else counted with its tokenizer

In a stream, these arrive exactly once, on one final empty chunk (chunk merging
adds numbers and concatenates strings, so nothing is repeated).

Remote candidates (a ``ChatHuggingFace`` over ``HuggingFaceEndpoint``, or any
model with an endpoint URL) spend their energy elsewhere: they are timed with
the :class:`~langchain_energyrouter.energy.NullMeter` (method ``"none"``,
flag ``"not_measured_locally"``). Override the detection with ``local_models``.

Tool calls: ``bind_tools`` binds OpenAI-format tools on the router; a call with
tools is routed only among candidates that really call tools (a local
``HuggingFacePipeline`` ignores tools; it is excluded with the reason), and the
tools are bound on the chosen candidate for that call.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.chat_models import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import add_usage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig
from langchain_core.runnables.config import run_in_executor
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, PrivateAttr

from langchain_energyrouter.energy.base import EnergyMeter, EnergyReading
from langchain_energyrouter.energy.null import NullMeter
from langchain_energyrouter.errors import (
    NoFeasibleModelError,
    ProfileError,
    RoutingError,
    UnknownModelError,
)
from langchain_energyrouter.profile import EnergyProfile
from langchain_energyrouter.scheduler import Decision, Scheduler
from langchain_energyrouter.scoring import Weights
from langchain_energyrouter.tokens import TokenCounter, configured_output_cap, message_text, request_output_cap

ROUTING_OPTIONS = ("weights", "model", "constraints", "task_type")
"""Per-call options: call keywords, ``.bind(...)`` or ``config["configurable"]``."""

_PIPELINE_ONLY_KWARGS = ("pipeline_kwargs", "skip_prompt")
_URL_ATTRS = ("endpoint_url", "inference_server_url", "base_url", "openai_api_base", "api_base", "api_url")

__all__ = ["ROUTING_OPTIONS", "EnergyAwareRouter"]


# -- what kind of candidate is this? -------------------------------------------
def _local_pipeline(model: Any) -> Any | None:
    """The ``HuggingFacePipeline`` a ``ChatHuggingFace`` wraps, or None (duck-typed: no import)."""
    llm = getattr(model, "llm", None)
    if llm is not None and getattr(llm, "pipeline", None) is not None and hasattr(model, "_to_chat_prompt"):
        return llm
    return None


def _has_endpoint_url(obj: Any) -> bool:
    return any(isinstance(getattr(obj, attr, None), str) and getattr(obj, attr) for attr in _URL_ATTRS)


def _runs_locally(model: Any) -> bool:
    """Whether a candidate spends its energy in this process's hardware (so a meter can see it)."""
    if _local_pipeline(model) is not None:
        return True
    llm = getattr(model, "llm", None)
    if llm is not None and (_has_endpoint_url(llm) or type(llm).__name__ != "HuggingFacePipeline"):
        return False  # ChatHuggingFace over an endpoint, TGI or the Hub
    return not _has_endpoint_url(model)


def _tool_incapability(model: Any) -> str | None:
    """Why a candidate cannot call tools, or None when it can."""
    if _local_pipeline(model) is not None:
        return "local HuggingFacePipeline ignores tools (no tool calling)"
    if type(model).bind_tools is BaseChatModel.bind_tools:
        return f"{type(model).__name__} does not implement bind_tools"
    return None


def _model_name_of(model: Any) -> str | None:
    for attr in ("model_id", "model_name", "model"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    return None


def _lift_configurable(config: RunnableConfig | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    configurable = (config or {}).get("configurable") or {}
    for key in ROUTING_OPTIONS:
        if key in configurable and key not in kwargs:
            kwargs[key] = configurable[key]
    return kwargs


def _to_chunk(message: BaseMessage) -> AIMessageChunk:
    """An AIMessage as one AIMessageChunk (for candidates that cannot stream)."""
    calls = getattr(message, "tool_calls", None) or []
    return AIMessageChunk(
        content=message.content,
        additional_kwargs=dict(message.additional_kwargs),
        response_metadata=dict(message.response_metadata),
        usage_metadata=getattr(message, "usage_metadata", None),
        tool_call_chunks=[
            tool_call_chunk(name=c["name"], args=json.dumps(c["args"]), id=c.get("id"), index=i)
            for i, c in enumerate(calls)
        ],
        id=message.id,
    )


def _add_usage(total: dict[str, Any] | None, usage: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not usage:
        return total
    if total is None:
        return dict(usage)
    return dict(add_usage(total, usage))  # type: ignore[arg-type]


def _chunk_is_empty(chunk: ChatGenerationChunk) -> bool:
    message = chunk.message
    return (
        not message.content
        and not getattr(message, "tool_call_chunks", None)
        and not message.additional_kwargs
        and not message.response_metadata
        and not chunk.generation_info
    )


# -- guarded streaming over a local pipeline -----------------------------------
def _stream_local_pipeline(
    chat: Any,
    messages: list[BaseMessage],
    stop: list[str] | None,
    run_manager: CallbackManagerForLLMRun | None,
    **kwargs: Any,
) -> Iterator[ChatGenerationChunk]:
    """Stream a ``ChatHuggingFace`` over a local pipeline, surfacing generation errors.

    langchain-huggingface's own ``_stream`` runs the pipeline in a thread and
    reads a ``TextIteratorStreamer`` with a 60 s timeout: when generation
    fails the error only reaches stderr and the reader hangs 60 s. Here the
    thread catches the error, wakes the reader and the reader re-raises it. A
    reader that stops early also stops the generation (a stopping criterion).
    """
    from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

    pipe = chat.llm.pipeline
    prompt = chat._to_chat_prompt(messages)
    pipeline_kwargs = dict(kwargs.get("pipeline_kwargs") or {})
    stop_ids = list(pipe.tokenizer.convert_tokens_to_ids(stop)) if stop else []
    cancelled = threading.Event()

    class _Stop(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **_: Any) -> bool:
            return cancelled.is_set() or any(int(input_ids[0][-1]) == i for i in stop_ids)

    streamer = TextIteratorStreamer(
        pipe.tokenizer, timeout=None, skip_prompt=kwargs.get("skip_prompt", True), skip_special_tokens=True
    )
    failure: list[BaseException] = []

    def generate() -> None:
        try:
            pipe(
                text_inputs=prompt,
                streamer=streamer,
                stopping_criteria=StoppingCriteriaList([_Stop()]),
                **pipeline_kwargs,
            )
        except BaseException as err:  # reported to the reader below, not lost on stderr
            failure.append(err)
        finally:
            streamer.text_queue.put(streamer.stop_signal)  # wake the reader whatever happened

    thread = threading.Thread(target=generate, name="energyrouter-generate", daemon=True)
    thread.start()
    try:
        for text in streamer:
            if failure:
                break
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
            if run_manager:
                run_manager.on_llm_new_token(text, chunk=chunk)
            yield chunk
        thread.join()
        if failure:
            raise failure[0]
    finally:
        cancelled.set()


async def _iterate_in_thread(iterator: Iterator[Any]) -> AsyncIterator[Any]:
    """Iterate a blocking iterator from async code, one ``next`` per executor call."""
    done = object()
    try:
        while True:
            item = await run_in_executor(None, next, iterator, done)
            if item is done:
                return
            yield item
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            try:
                close()
            except ValueError:  # "generator already executing": cancelled mid-next; it ends on its own
                pass


# -- one call's plan -----------------------------------------------------------
@dataclass
class _Plan:
    decision: Decision
    order: list[str]
    """Models to try, in order (the decision's choice first)."""
    can_fall_back: bool
    kwargs: dict[str, Any]
    """Keywords forwarded to the candidate (routing options removed)."""
    output_cap: int | None
    tools: list[dict[str, Any]] | None
    tool_choice: Any
    failures: list[dict[str, Any]] = field(default_factory=list)
    errors: dict[str, BaseException] = field(default_factory=dict)


class EnergyAwareRouter(BaseChatModel):
    """A chat model that sends each call to the candidate the scheduler picks.

    Example:
        ```python
        router = EnergyAwareRouter(
            models={"smollm2-135m": chat_a, "gemma3-270m": chat_b},
            profile="calibration/profiles/cpu-reference.json",
            weights=Weights(accuracy=0.6, energy=0.3, time=0.1),
        )
        chain = prompt | router | StrOutputParser()
        router.invoke(messages, weights={"energy": 1.0})   # per call
        router.invoke(messages, model="gemma3-270m")       # forced route
        router.explain(messages).model                     # decide without running
        ```

    Per-call options (``weights``, ``model``, ``constraints``, ``task_type``)
    are call keywords, ``.bind(...)`` keywords or keys of
    ``config["configurable"]`` (explicit keywords win). ``max_tokens`` /
    ``max_new_tokens`` cap the output and reach the candidate in the form it
    understands (``pipeline_kwargs["max_new_tokens"]`` for a local pipeline).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    models: Any
    """Name -> ``BaseChatModel`` (or a list of chat models, named by their ``model_id``/``model_name``)."""
    profile: Any
    """An :class:`EnergyProfile` or the path of a profile JSON; must cover every model."""
    weights: Any = None
    """Default weights: :class:`Weights`, a dict or an (accuracy, energy, time) tuple; None = balanced."""
    normalization: Any = "minmax"
    """Scheduler normaliser: ``"minmax"``, ``"relative"``, ``"hybrid"`` or a callable."""
    constraints: Any = None
    """Default hard limits: :class:`Constraints` or a dict."""
    pareto: bool = False
    """Drop candidates dominated on accuracy, energy and runtime."""
    on_infeasible: Literal["raise", "least_violating"] = "raise"
    """What to do when every candidate breaks a constraint."""
    task_type: str | None = None
    """Default task type (per-task accuracy from the profile)."""
    max_tokens: int | None = None
    """Default output cap for every call (a call's ``max_tokens`` wins)."""
    fallback: bool = True
    """On a candidate's error, try the next in the decision's ranking (not for forced routes)."""
    fallback_on: tuple[type[BaseException], ...] = (Exception,)
    """Exception types that trigger a fallback; others propagate at once."""
    meter: Any = None
    """Energy meter for local candidates; None = ``default_meter()``, created on first use."""
    local_models: list[str] | None = None
    """Candidates metered locally; None = detected (endpoint-backed models are not)."""
    tool_models: list[str] | None = None
    """Candidates that call tools; None = detected (local pipelines do not)."""
    streaming: bool = False
    """Route ``invoke`` through the streaming path."""

    _rt: _Runtime = PrivateAttr()

    def __init__(self, **kwargs: Any) -> None:
        """Validate the models against the profile and build the scheduler.

        Raises:
            TypeError: a model is not a ``BaseChatModel`` (e.g. a ``.bind()`` result).
            ValueError: no models, duplicate names, or bad constraints.
            ProfileError: the profile is unreadable or lacks a model.
            WeightsError: the weights are invalid.
        """
        super().__init__(**kwargs)
        self._rt = rt = _Runtime()
        rt.candidates = candidates = _named_models(self.models)
        profile = EnergyProfile.coerce(self.profile)
        missing = [name for name in candidates if name not in profile.models]
        if missing:
            raise ProfileError(
                f"Profile {profile.origin} has no entry for model(s) {missing}. "
                f"Profiled models: {sorted(profile.models)}. "
                "Run `energyrouter calibrate` for them, or drop them from the router."
            )
        rt.scheduler = Scheduler(
            profile,
            Weights.coerce(self.weights),
            self.normalization,
            constraints=self.constraints,
            models=list(candidates),
            pareto=self.pareto,
            on_infeasible=self.on_infeasible,
        )
        rt.counter = TokenCounter(candidates)
        if self.local_models is not None:
            rt.local = frozenset(self._check_names("local_models", self.local_models))
        else:
            rt.local = frozenset(n for n, m in candidates.items() if _runs_locally(m))
        if self.tool_models is not None:
            capable = set(self._check_names("tool_models", self.tool_models))
            rt.tool_reasons = {n: "not listed in tool_models" for n in candidates if n not in capable}
        else:
            rt.tool_reasons = {n: why for n, m in candidates.items() if (why := _tool_incapability(m)) is not None}
        # Without a cap in the call, each model's prediction is capped at its own configured budget.
        rt.configured_caps = {name: configured_output_cap(m) for name, m in candidates.items()}
        rt.meter = self.meter

    def _check_names(self, option: str, names: Sequence[str]) -> list[str]:
        unknown = [n for n in names if n not in self._rt.candidates]
        if unknown:
            raise UnknownModelError(
                f"{option} names unknown model(s) {unknown}; candidates are {list(self._rt.candidates)}."
            )
        return list(names)

    # -- LangChain identity ---------------------------------------------------
    @property
    def _llm_type(self) -> str:
        return "energy-aware-router"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "models": {name: model._llm_type for name, model in self._rt.candidates.items()},
            "profile": self._rt.scheduler.profile.origin,
            "weights": self._rt.scheduler.weights.as_dict(),
            "normalization": self._rt.scheduler.normalization,
            "pareto": self.pareto,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "energyrouter"
        forced = kwargs.get("model")
        params["ls_model_name"] = str(forced) if forced else "|".join(self._rt.candidates)
        params["ls_model_type"] = "chat"
        cap = kwargs.get("max_tokens", self.max_tokens)
        if isinstance(cap, int):
            params["ls_max_tokens"] = cap
        return params

    @property
    def candidates(self) -> dict[str, BaseChatModel]:
        """The candidate models by name (a copy)."""
        return dict(self._rt.candidates)

    @property
    def scheduler(self) -> Scheduler:
        """The scheduler making the decisions."""
        return self._rt.scheduler

    # -- per-call options from config["configurable"] --------------------------
    def invoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        return super().invoke(input, config, stop=stop, **_lift_configurable(config, kwargs))

    async def ainvoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        return await super().ainvoke(input, config, stop=stop, **_lift_configurable(config, kwargs))

    def stream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        return super().stream(input, config, stop=stop, **_lift_configurable(config, kwargs))

    def astream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        return super().astream(input, config, stop=stop, **_lift_configurable(config, kwargs))

    # -- tools -----------------------------------------------------------------
    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: dict[str, Any] | str | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (OpenAI format); calls then go only to tool-capable candidates.

        Args:
            tools: anything ``convert_to_openai_tool`` accepts.
            tool_choice: ``"auto"``, ``"any"``/``"required"``/``True``, ``"none"``, a tool name or an
                OpenAI ``{"type": "function", ...}`` dict; translated for the chosen candidate.
            **kwargs: further keywords bound on the router.
        """
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    # -- decisions -------------------------------------------------------------
    def explain(self, input: LanguageModelInput, **kwargs: Any) -> Decision:
        """The decision a call with these messages and options would get; no model runs.

        Accepts the same per-call options as ``invoke`` (``weights``, ``model``,
        ``constraints``, ``task_type``, ``max_tokens``, ``tools``).
        """
        messages = self._convert_input(input).to_messages()
        return self._plan(messages, dict(kwargs)).decision

    def _plan(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> _Plan:
        rt = self._rt
        options = {key: kwargs.pop(key) for key in ROUTING_OPTIONS if key in kwargs}
        cap = request_output_cap(kwargs)
        for key in ("max_tokens", "max_new_tokens"):
            kwargs.pop(key, None)
        if cap is None:
            cap = self.max_tokens
        tools = kwargs.pop("tools", None)
        tool_choice = kwargs.pop("tool_choice", None)
        forced = options.get("model")
        if forced is not None and forced not in rt.candidates:
            raise UnknownModelError(f"Cannot route to model {forced!r}: the router's models are {list(rt.candidates)}.")
        exclude: dict[str, str] = {}
        if tools:
            exclude = {name: f"cannot call tools: {why}" for name, why in rt.tool_reasons.items()}
            if len(exclude) == len(rt.candidates) or (forced is not None and forced in exclude):
                who = [forced] if forced is not None and forced in exclude else list(exclude)
                detail = "; ".join(f"{n}: {exclude[n]}" for n in who)
                raise NoFeasibleModelError(
                    f"Tools are bound but no usable candidate calls tools ({detail}). Add a tool-calling model "
                    "(e.g. a ChatHuggingFace over an endpoint), list it in tool_models, or do not bind tools.",
                    {n: exclude[n] for n in who},
                )
        decision = rt.scheduler.decide(
            rt.counter.count_all(messages),
            cap if cap is not None else rt.configured_caps,
            weights=options.get("weights"),
            constraints=options.get("constraints"),
            task_type=options.get("task_type", self.task_type),
            exclude=exclude or None,
            force=forced,
        )
        can_fall_back = self.fallback and forced is None
        order = [decision.model]
        if can_fall_back:
            order += [name for name in decision.ranking if name != decision.model]
        return _Plan(decision, order, can_fall_back, kwargs, cap, tools, tool_choice)

    def _prepare(self, name: str, plan: _Plan) -> tuple[BaseChatModel, dict[str, Any]]:
        """The candidate and the keywords to call it with (output cap and tools in its own form).

        ``pipeline_kwargs`` / ``skip_prompt`` reach local pipelines only: an endpoint would reject them.
        """
        model = self._rt.candidates[name]
        kwargs = dict(plan.kwargs)
        local_pipeline = _local_pipeline(model) is not None
        if not local_pipeline:
            for key in _PIPELINE_ONLY_KWARGS:
                kwargs.pop(key, None)
        if plan.output_cap is not None:
            if local_pipeline:
                kwargs["pipeline_kwargs"] = {**(kwargs.get("pipeline_kwargs") or {}), "max_new_tokens": plan.output_cap}
            else:
                kwargs["max_tokens"] = plan.output_cap
        if plan.tools:
            kwargs.update(_tool_kwargs(model, plan.tools, plan.tool_choice))
        return model, kwargs

    # -- metering --------------------------------------------------------------
    def _meter_for(self, name: str) -> EnergyMeter:
        rt = self._rt
        if name not in rt.local:
            return rt.null_meter
        meter = rt.meter
        if meter is None:
            with rt.meter_lock:
                if rt.meter is None:
                    from langchain_energyrouter.energy import default_meter

                    rt.meter = default_meter()
                    rt.owns_meter = True
                meter = rt.meter
        return meter  # type: ignore[no-any-return]

    def close(self) -> None:
        """Close the meter the router created itself (a meter passed in is left to its owner)."""
        rt = self._rt
        with rt.meter_lock:
            if rt.owns_meter and rt.meter is not None:
                rt.meter.close()
                rt.meter = None
                rt.owns_meter = False

    def _failed(self, plan: _Plan, name: str, err: BaseException, reading: EnergyReading | None) -> bool:
        """Record a failed attempt; True when the next candidate may be tried."""
        if not (plan.can_fall_back and isinstance(err, Exception) and isinstance(err, self.fallback_on)):
            return False
        plan.errors[name] = err
        plan.failures.append(
            {
                "model": name,
                "error_type": type(err).__name__,
                "error": str(err),
                "runtime_s": reading.runtime_s if reading is not None else None,
            }
        )
        return True

    def _all_failed(self, plan: _Plan) -> RoutingError:
        detail = "; ".join(f"{name}: {type(err).__name__}: {err}" for name, err in plan.errors.items())
        return RoutingError(
            f"Every candidate tried failed ({detail}). See RoutingError.failures; "
            "check the models, or pass fallback_on=() to see the first error directly.",
            plan.errors,
        )

    def _metadata(
        self, plan: _Plan, name: str, reading: EnergyReading
    ) -> tuple[dict[str, Any], Callable[[Mapping[str, Any] | None, str], dict[str, Any]]]:
        """``response_metadata`` for the answer of ``name``, and a usage builder."""
        counter = self._rt.counter
        candidate = plan.decision.candidates[name]
        routing = plan.decision.as_dict()
        routing["served_by"] = name
        routing["failures"] = list(plan.failures)
        routing["measured_energy_j"] = reading.energy_j
        routing["measured_runtime_s"] = reading.runtime_s
        energy = reading.as_metadata()
        energy["predicted_energy_j"] = candidate.predicted_energy_j
        energy["predicted_runtime_s"] = candidate.predicted_runtime_s
        metadata = {"model_name": name, "routing": routing, "energy": energy}

        def usage(own: Mapping[str, Any] | None, output_text: str) -> dict[str, Any]:
            if own and own.get("total_tokens"):
                return dict(own)
            output_tokens = counter.count_text(name, output_text)
            return {
                "input_tokens": candidate.input_tokens,
                "output_tokens": output_tokens,
                "total_tokens": candidate.input_tokens + output_tokens,
            }

        return metadata, usage

    def _finish_result(self, plan: _Plan, name: str, result: ChatResult, reading: EnergyReading) -> ChatResult:
        metadata, usage = self._metadata(plan, name, reading)
        generations = []
        for generation in result.generations:
            message = generation.message
            own = getattr(message, "usage_metadata", None)
            meta = {k: v for k, v in message.response_metadata.items() if k != "model_name"}
            update: dict[str, Any] = {"response_metadata": {**meta, **metadata}}
            if isinstance(message, AIMessage):
                update["usage_metadata"] = usage(own, message_text(message))
            info = {k: v for k, v in (generation.generation_info or {}).items() if k != "model_name"}
            # A copy: fake and cached models hand out the same message object every call.
            generations.append(ChatGeneration(message=message.model_copy(update=update), generation_info=info or None))
        llm_output = {**(result.llm_output or {}), "model_name": name}
        return ChatResult(generations=generations, llm_output=llm_output)

    def _final_chunk(self, plan: _Plan, name: str, reading: EnergyReading, own: Any, text: str) -> ChatGenerationChunk:
        metadata, usage = self._metadata(plan, name, reading)
        return ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                response_metadata=metadata,
                usage_metadata=usage(own, text),  # type: ignore[arg-type]
                chunk_position="last",
            )
        )

    # -- generate --------------------------------------------------------------
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        plan = self._plan(messages, kwargs)
        for name in plan.order:
            model, call_kwargs = self._prepare(name, plan)
            meter = self._meter_for(name)
            handle = meter.begin()
            try:
                result = model._generate(messages, stop=stop, run_manager=run_manager, **call_kwargs)
            except BaseException as err:
                if not self._failed(plan, name, err, meter.end(handle)):
                    raise
                continue
            return self._finish_result(plan, name, result, meter.end(handle))
        raise self._all_failed(plan) from plan.errors[plan.order[-1]]

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        plan = self._plan(messages, kwargs)
        for name in plan.order:
            model, call_kwargs = self._prepare(name, plan)
            meter = self._meter_for(name)
            handle = meter.begin()
            try:
                if _local_pipeline(model) is not None:  # no async path: run the sync one in a thread
                    result = await run_in_executor(
                        None,
                        model._generate,
                        messages,
                        stop=stop,
                        run_manager=run_manager.get_sync() if run_manager else None,
                        **call_kwargs,
                    )
                else:
                    result = await model._agenerate(messages, stop=stop, run_manager=run_manager, **call_kwargs)
            except BaseException as err:
                if not self._failed(plan, name, err, meter.end(handle)):
                    raise
                continue
            return self._finish_result(plan, name, result, meter.end(handle))
        raise self._all_failed(plan) from plan.errors[plan.order[-1]]

    # -- stream ----------------------------------------------------------------
    def _candidate_stream(
        self,
        model: BaseChatModel,
        messages: list[BaseMessage],
        stop: list[str] | None,
        run_manager: CallbackManagerForLLMRun | None,
        kwargs: dict[str, Any],
    ) -> Iterator[ChatGenerationChunk]:
        if _local_pipeline(model) is not None:
            return _stream_local_pipeline(model, messages, stop, run_manager, **kwargs)
        if type(model)._stream is BaseChatModel._stream:
            return self._generate_as_stream(model, messages, stop, run_manager, kwargs)
        return model._stream(messages, stop=stop, run_manager=run_manager, **kwargs)

    @staticmethod
    def _generate_as_stream(
        model: BaseChatModel,
        messages: list[BaseMessage],
        stop: list[str] | None,
        run_manager: CallbackManagerForLLMRun | None,
        kwargs: dict[str, Any],
    ) -> Iterator[ChatGenerationChunk]:
        result = model._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
        for generation in result.generations[:1]:
            yield ChatGenerationChunk(message=_to_chunk(generation.message), generation_info=generation.generation_info)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        plan = self._plan(messages, kwargs)
        for name in plan.order:
            model, call_kwargs = self._prepare(name, plan)
            meter = self._meter_for(name)
            tracker = _StreamTracker()
            handle = meter.begin()
            chunks = self._candidate_stream(model, messages, stop, run_manager, call_kwargs)
            try:
                for chunk in chunks:
                    cleaned = tracker.clean(chunk)
                    if cleaned is not None:
                        yield cleaned
            except BaseException as err:
                reading = meter.end(handle)
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
                # Once a token reached the caller the answer cannot be swapped for another model's.
                if tracker.started or not self._failed(plan, name, err, reading):
                    raise
                continue
            reading = meter.end(handle)
            yield self._final_chunk(plan, name, reading, tracker.usage, tracker.text)
            return
        raise self._all_failed(plan) from plan.errors[plan.order[-1]]

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        plan = self._plan(messages, kwargs)
        for name in plan.order:
            model, call_kwargs = self._prepare(name, plan)
            meter = self._meter_for(name)
            tracker = _StreamTracker()
            handle = meter.begin()
            chunks: AsyncIterator[ChatGenerationChunk]
            if _local_pipeline(model) is not None or type(model)._astream is BaseChatModel._astream:
                sync_manager = run_manager.get_sync() if run_manager else None
                chunks = _iterate_in_thread(self._candidate_stream(model, messages, stop, sync_manager, call_kwargs))
            else:
                chunks = model._astream(messages, stop=stop, run_manager=run_manager, **call_kwargs)
            try:
                async for chunk in chunks:
                    cleaned = tracker.clean(chunk)
                    if cleaned is not None:
                        yield cleaned
            except BaseException as err:
                reading = meter.end(handle)
                aclose = getattr(chunks, "aclose", None)
                if aclose is not None:
                    await aclose()
                if tracker.started or not self._failed(plan, name, err, reading):
                    raise
                continue
            reading = meter.end(handle)
            yield self._final_chunk(plan, name, reading, tracker.usage, tracker.text)
            return
        raise self._all_failed(plan) from plan.errors[plan.order[-1]]


class _Runtime:
    """The router's derived state, in one plain object (pydantic private attributes are slow to read)."""

    __slots__ = (
        "candidates",
        "configured_caps",
        "counter",
        "local",
        "meter",
        "meter_lock",
        "null_meter",
        "owns_meter",
        "scheduler",
        "tool_reasons",
    )

    def __init__(self) -> None:
        self.candidates: dict[str, BaseChatModel] = {}
        self.scheduler: Scheduler
        self.counter: TokenCounter
        self.local: frozenset[str] = frozenset()
        self.tool_reasons: dict[str, str] = {}
        self.configured_caps: dict[str, int | None] = {}
        self.meter: Any = None
        self.owns_meter = False
        self.meter_lock = threading.Lock()
        self.null_meter = NullMeter()


class _StreamTracker:
    """Strips usage and model names from a candidate's chunks, keeping them for the final chunk."""

    __slots__ = ("parts", "started", "usage")

    def __init__(self) -> None:
        self.started = False
        self.usage: dict[str, Any] | None = None
        self.parts: list[str] = []

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def clean(self, chunk: ChatGenerationChunk) -> ChatGenerationChunk | None:
        message = chunk.message
        usage = getattr(message, "usage_metadata", None)
        info = chunk.generation_info
        if usage or "model_name" in message.response_metadata or (info and "model_name" in info):
            self.usage = _add_usage(self.usage, usage)
            update: dict[str, Any] = {
                "response_metadata": {k: v for k, v in message.response_metadata.items() if k != "model_name"}
            }
            if usage:
                update["usage_metadata"] = None
            message = message.model_copy(update=update)
            info = {k: v for k, v in info.items() if k != "model_name"} if info else None
            chunk = ChatGenerationChunk(message=message, generation_info=info or None)
        if _chunk_is_empty(chunk):
            return None
        self.started = True
        self.parts.append(message_text(message) if not isinstance(message.content, str) else message.content)
        for call in getattr(message, "tool_call_chunks", None) or []:
            self.parts.append((call.get("name") or "") + (call.get("args") or ""))
        return chunk


# -- helpers that need the candidate -------------------------------------------
def _named_models(models: Any) -> dict[str, BaseChatModel]:
    if isinstance(models, Mapping):
        items = list(models.items())
    elif isinstance(models, Sequence) and not isinstance(models, (str, bytes)):
        items = []
        for model in models:
            name = _model_name_of(model)
            if name is None:
                raise ValueError(
                    f"Cannot name the model {model!r}: it has no model_id/model_name. "
                    "Pass models as a dict {name: chat_model}."
                )
            items.append((name, model))
    else:
        raise TypeError(
            f"models must be a dict {{name: chat_model}} or a list of chat models, got {type(models).__name__}."
        )
    if not items:
        raise ValueError("The router needs at least one model; pass models={name: chat_model, ...}.")
    named: dict[str, BaseChatModel] = {}
    for name, model in items:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"Model name {name!r} is not a non-empty string.")
        if name in named:
            raise ValueError(f"Duplicate model name {name!r}; give every model a distinct name.")
        if isinstance(model, RunnableBinding):
            raise TypeError(
                f"Model {name!r} is a {type(model).__name__} (a .bind()/.bind_tools() result), not a chat model. "
                "Pass the chat model itself; bind options on the router instead (router.bind(...))."
            )
        if not isinstance(model, BaseChatModel):
            raise TypeError(
                f"Model {name!r} is a {type(model).__name__}, not a langchain BaseChatModel. "
                "Wrap an LLM in a chat model (e.g. ChatHuggingFace(llm=...)) first."
            )
        named[name] = model
    return named


def _tool_kwargs(model: BaseChatModel, tools: list[dict[str, Any]], tool_choice: Any) -> dict[str, Any]:
    """The keywords ``model.bind_tools(tools, tool_choice=...)`` would bind, to pass to its ``_generate``."""
    is_hf_chat = hasattr(model, "_to_chat_prompt")
    choice = tool_choice
    if is_hf_chat:
        # ChatHuggingFace reads "any" as a tool name and refuses a choice with several tools: bind the
        # tools alone and pass the OpenAI-style choice ourselves.
        binding = model.bind_tools(tools)
        if choice in ("any", True):
            choice = "required"
        elif isinstance(choice, str) and choice not in ("auto", "none", "required"):
            choice = {"type": "function", "function": {"name": choice}}
    else:
        binding = model.bind_tools(tools, tool_choice=choice) if choice is not None else model.bind_tools(tools)
        choice = None
    if not isinstance(binding, RunnableBinding) or binding.bound is not model:
        raise TypeError(
            f"{type(model).__name__}.bind_tools returned {type(binding).__name__}, not a binding of the model; "
            "the router cannot pass its tools on. Remove it from tool_models."
        )
    kwargs = dict(binding.kwargs)
    if choice is not None:
        kwargs["tool_choice"] = choice
    return kwargs
