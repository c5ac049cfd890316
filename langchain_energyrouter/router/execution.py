"""Running one routed call: try its candidates in the decision's order, meter each attempt, fall back, and
dress the answer.

Each candidate is called through its own ``_generate`` / ``_agenerate`` / ``_stream`` / ``_astream`` with the
router's run manager, so LangChain callbacks see one run: one start, one end, tokens once and usage once. The
candidate's ``rate_limiter`` is honoured (acquired before its meter window opens); its own callbacks and cache
are bypassed. A stream falls back to the next candidate only before its first token reached the caller.

The answer (each generation, or a stream's last chunk) gets the call's ``response_metadata`` (routing, energy,
model name) and usage (:meth:`~langchain_energyrouter.router.call.RoutedCall.metadata`), and the measurement
goes to the learners once (:meth:`~langchain_energyrouter.router.call.RoutedCall.learn`).

Every result carries::

    response_metadata["model_name"]  the provider's model name (the candidate's model_id where it sets none)
    response_metadata["routing"]     Decision.as_dict() plus
        served_by            the candidate (router name) that answered; "model" is the scheduler's choice
        predicted_*          the predictions of served_by (after a fallback not the choice's, which stay
                             under candidates[model]), so they sit beside that model's measurement
        failures             [{model, error_type, error, runtime_s, energy_j, method, flags}] of attempts that raised
        measured_energy_j    the meter's joules (None when not measured locally)
        measured_runtime_s   the meter's wall time in seconds
        busy                 {model: why} of candidates the call's admission refused (only when some were)
        energy_method_mismatch   {model: {"profile": ..., "meter": ...}} where the live meter measures
                             differently from the profile's energy data (only when some differ)
        cache_hit            True on an answer replayed from a LangChain cache (then method "none", flag "cache_hit")
    response_metadata["energy"]      EnergyReading.as_metadata() plus
        predicted_energy_j, predicted_runtime_s   the profile's prediction for the model that answered
    usage_metadata                   the candidate's own usage, else counted with its tokenizer

In a stream, these arrive exactly once, on one final empty chunk (chunk merging
adds numbers and concatenates strings, so nothing is repeated). An exception
that leaves the router carries the attempts' readings as ``routing_failures``
(same entries as ``routing["failures"]``, the raising attempt last).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables.config import run_in_executor

from langchain_energyrouter.energy.base import EnergyReading
from langchain_energyrouter.router.call import candidate_call
from langchain_energyrouter.router.candidates import local_pipeline
from langchain_energyrouter.router.chunks import StreamTracker, to_chunk
from langchain_energyrouter.router.local_stream import stream_local_pipeline, truncate_result
from langchain_energyrouter.router.stream_ahead import StreamAhead
from langchain_energyrouter.router.tokens import message_text

if TYPE_CHECKING:
    from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun

    from langchain_energyrouter.router.call import RoutedCall
    from langchain_energyrouter.router.live import Attempt

__all__ = [
    "FLAG_CACHE_HIT",
    "agenerate",
    "astream",
    "cache_hit_metadata",
    "candidate_stream",
    "final_chunk",
    "finish_result",
    "generate",
    "stream",
]

FLAG_CACHE_HIT = "cache_hit"
"""Energy flag of an answer replayed from a LangChain cache: nothing ran (method ``"none"``)."""


# -- attempts ---------------------------------------------------------------------
def start_attempt(
    name: str, plan: RoutedCall, *, start_window: bool = True
) -> tuple[BaseChatModel, dict[str, Any], Attempt] | None:
    """Prepare the call to ``name``, wait for its rate limiter, then admit it, count it in flight and open
    its meter window (``start_window=False``: the worker that runs the model opens it); None when the
    call's admission refuses it."""
    model, call_kwargs = candidate_call(name, plan)
    if model.rate_limiter is not None:
        model.rate_limiter.acquire(blocking=True)
    attempt = plan.attempt(name, start_window=start_window)
    return (model, call_kwargs, attempt) if attempt is not None else None


async def astart_attempt(
    name: str, plan: RoutedCall, *, start_window: bool = True
) -> tuple[BaseChatModel, dict[str, Any], Attempt] | None:
    """:func:`start_attempt` for async calls (the rate limiter is awaited)."""
    model, call_kwargs = candidate_call(name, plan)
    if model.rate_limiter is not None:
        await model.rate_limiter.aacquire(blocking=True)
    attempt = plan.attempt(name, start_window=start_window)
    return (model, call_kwargs, attempt) if attempt is not None else None


def finish_result(plan: RoutedCall, name: str, result: ChatResult, reading: EnergyReading) -> ChatResult:
    """The candidate's result dressed as the router's: routing and energy metadata, usage, learned from once."""
    if local_pipeline(plan.parts.candidates[name]) is not None:
        result = truncate_result(result, plan.stop)
    provider = (result.llm_output or {}).get("model_name")
    generations: list[ChatGeneration] = []
    for generation in result.generations:
        message = generation.message
        own_name = message.response_metadata.get("model_name") or (generation.generation_info or {}).get("model_name")
        metadata, usage = plan.metadata(name, reading, own_name or provider)
        update: dict[str, Any] = {"response_metadata": {**message.response_metadata, **metadata}}
        if isinstance(message, AIMessage):
            update["usage_metadata"] = usage(getattr(message, "usage_metadata", None), message_text(message))
            if not generations:  # learn from the answer (the first generation) once
                metadata["routing"]["generated_tokens"] = plan.learn(
                    name, reading, update["usage_metadata"], message_text(message)
                )
        # A copy: fake and cached models hand out the same message object every call.
        generations.append(
            ChatGeneration(message=message.model_copy(update=update), generation_info=generation.generation_info)
        )
    model_name = generations[0].message.response_metadata["model_name"] if generations else provider
    return ChatResult(generations=generations, llm_output={**(result.llm_output or {}), "model_name": model_name})


def final_chunk(plan: RoutedCall, name: str, reading: EnergyReading, tracker: StreamTracker) -> ChatGenerationChunk:
    """The stream's last, empty chunk: it carries the routing and energy metadata and the usage, once."""
    metadata, usage = plan.metadata(name, reading, tracker.model_name)
    counted = usage(tracker.usage, tracker.text)
    metadata["routing"]["generated_tokens"] = plan.learn(name, reading, counted, tracker.text)
    return ChatGenerationChunk(
        message=AIMessageChunk(
            content="",
            response_metadata=metadata,
            usage_metadata=counted,  # type: ignore[arg-type]
            chunk_position="last",
        )
    )


# -- running a call -----------------------------------------------------------------
def generate(
    plan: RoutedCall, messages: list[BaseMessage], stop: list[str] | None, run_manager: CallbackManagerForLLMRun | None
) -> ChatResult:
    """Try the call's candidates in order until one answers (see the module doc)."""
    for name in plan.order:
        started = start_attempt(name, plan)
        if started is None:
            continue
        model, call_kwargs, window = started
        try:
            result = model._generate(messages, stop=stop, run_manager=run_manager, **call_kwargs)
        except BaseException as err:
            if not plan.failed(name, err, window.end()):
                raise
            continue
        return finish_result(plan, name, result, window.end())
    raise plan.all_failed()


async def agenerate(
    plan: RoutedCall,
    messages: list[BaseMessage],
    stop: list[str] | None,
    run_manager: AsyncCallbackManagerForLLMRun | None,
) -> ChatResult:
    """:func:`generate` for async calls (a local pipeline runs in a worker thread)."""
    for name in plan.order:
        in_thread = local_pipeline(plan.candidates[name]) is not None  # no async path: the sync one in a thread
        started = await astart_attempt(name, plan, start_window=not in_thread)
        if started is None:
            continue
        model, call_kwargs, window = started
        try:
            if in_thread:
                sync_manager = run_manager.get_sync() if run_manager else None
                result = await run_in_executor(
                    None, _metered_generate, window, model, messages, stop, sync_manager, call_kwargs
                )
            else:
                result = await model._agenerate(messages, stop=stop, run_manager=run_manager, **call_kwargs)
        except BaseException as err:
            if not plan.failed(name, err, window.end()):
                raise
            continue
        return finish_result(plan, name, result, window.end())
    raise plan.all_failed()


def _metered_generate(
    attempt: Attempt,
    model: BaseChatModel,
    messages: list[BaseMessage],
    stop: list[str] | None,
    run_manager: CallbackManagerForLLMRun | None,
    kwargs: dict[str, Any],
) -> ChatResult:
    """``model._generate`` on a worker thread, metered from when the worker starts it (the wait for a free
    worker is not the model's time)."""
    attempt.start_window()
    return model._generate(messages, stop=stop, run_manager=run_manager, **kwargs)


def candidate_stream(
    model: BaseChatModel,
    messages: list[BaseMessage],
    stop: list[str] | None,
    run_manager: CallbackManagerForLLMRun | None,
    kwargs: dict[str, Any],
) -> Iterator[ChatGenerationChunk]:
    """What ``model`` streams: a local pipeline's guarded stream, its own, or its one answer as a chunk."""
    if local_pipeline(model) is not None:
        return stream_local_pipeline(model, messages, stop, run_manager, **kwargs)
    if type(model)._stream is BaseChatModel._stream:
        return _generate_as_stream(model, messages, stop, run_manager, kwargs)
    return model._stream(messages, stop=stop, run_manager=run_manager, **kwargs)


def _generate_as_stream(
    model: BaseChatModel,
    messages: list[BaseMessage],
    stop: list[str] | None,
    run_manager: CallbackManagerForLLMRun | None,
    kwargs: dict[str, Any],
) -> Iterator[ChatGenerationChunk]:
    result = model._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
    for generation in result.generations[:1]:
        yield ChatGenerationChunk(message=to_chunk(generation.message), generation_info=generation.generation_info)


def stream(
    plan: RoutedCall, messages: list[BaseMessage], stop: list[str] | None, run_manager: CallbackManagerForLLMRun | None
) -> Iterator[ChatGenerationChunk]:
    """Stream from the call's candidates in order; a fallback only before the first token.

    The candidate's chunks are read ahead of the caller (:class:`~langchain_energyrouter.router.stream_ahead.
    StreamAhead`): its meter window closes when the model stops, however slowly the caller reads.
    """
    for name in plan.order:
        started = start_attempt(name, plan, start_window=False)
        if started is None:
            continue
        model, call_kwargs, attempt = started
        tracker = StreamTracker()
        ahead = StreamAhead(candidate_stream(model, messages, stop, run_manager, call_kwargs), attempt)
        try:
            for chunk in ahead:
                cleaned = tracker.clean(chunk)
                if cleaned is not None:
                    yield cleaned
        except BaseException as err:
            ahead.close()
            # Once a token reached the caller the answer cannot be swapped for another model's.
            if not plan.failed(name, err, attempt.end(), may_fall_back=not tracker.started):
                raise
            continue
        yield final_chunk(plan, name, attempt.end(), tracker)
        return
    raise plan.all_failed()


async def astream(
    plan: RoutedCall,
    messages: list[BaseMessage],
    stop: list[str] | None,
    run_manager: AsyncCallbackManagerForLLMRun | None,
) -> AsyncIterator[ChatGenerationChunk]:
    """:func:`stream` for async calls: a local pipeline (or a model without an async stream) is read ahead on
    a thread as in :func:`stream`; a native async stream is metered until its last chunk."""
    for name in plan.order:
        candidate = plan.candidates[name]
        in_thread = local_pipeline(candidate) is not None or type(candidate)._astream is BaseChatModel._astream
        started = await astart_attempt(name, plan, start_window=not in_thread)
        if started is None:
            continue
        model, call_kwargs, attempt = started
        tracker = StreamTracker()
        ahead: StreamAhead[ChatGenerationChunk] | None = None
        chunks: AsyncIterator[ChatGenerationChunk]
        if in_thread:
            sync_manager = run_manager.get_sync() if run_manager else None
            ahead = StreamAhead(candidate_stream(model, messages, stop, sync_manager, call_kwargs), attempt)
            chunks = ahead.aiter()
        else:
            chunks = model._astream(messages, stop=stop, run_manager=run_manager, **call_kwargs)
        try:
            async for chunk in chunks:
                cleaned = tracker.clean(chunk)
                if cleaned is not None:
                    yield cleaned
        except BaseException as err:
            if ahead is not None:
                ahead.close()
            reading = attempt.end()
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()
            if not plan.failed(name, err, reading, may_fall_back=not tracker.started):
                raise
            continue
        yield final_chunk(plan, name, attempt.end(), tracker)
        return
    raise plan.all_failed()


def cache_hit_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """``response_metadata`` of a replayed answer: the old routing, and a reading of method ``"none"`` flagged
    ``cache_hit`` (nothing ran; ``"estimate"`` would mix methods in a measured deployment's totals)."""
    reading = EnergyReading(
        energy_j=None, energy_j_by_device={}, runtime_s=0.0, method="none", is_estimate=False, flags=(FLAG_CACHE_HIT,)
    )
    routing = {
        **(metadata.get("routing") or {}),
        "cache_hit": True,
        "failures": [],  # the first call's failed attempts were counted then
        "measured_energy_j": None,
        "measured_runtime_s": 0.0,
    }
    energy = {**reading.as_metadata()}
    for key in ("predicted_energy_j", "predicted_runtime_s"):
        energy[key] = (metadata.get("energy") or {}).get(key)
    return {**metadata, "routing": routing, "energy": energy}
