"""Running a ``ChatHuggingFace`` over a local pipeline: stop strings and a guarded stream.

langchain-huggingface ignores ``stop`` for local pipelines when generating, and
when streaming it maps each stop string to *one* token id (an unknown-token id
for any real string), so ``stop=[...]`` does nothing. Here stop strings reach
``generate`` as ``stop_strings`` with the tokenizer (the pipeline's
``stop_sequence`` option), and the text is cut at the first stop string, which
is what LangChain promises ("output is cut off at the first occurrence").

Its ``_stream`` also hides generation errors: the pipeline runs in a thread, the
error only reaches stderr and the reader waits 60 s for a ``queue.Empty``.
:func:`stream_local_pipeline` re-raises the error in the reader instead.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

__all__ = ["cut_at_stop", "stop_pipeline_kwargs", "stream_local_pipeline", "truncate_result"]


def stop_pipeline_kwargs(kwargs: dict[str, Any], stop: Sequence[str] | None) -> dict[str, Any]:
    """``kwargs`` with the stop strings added to ``pipeline_kwargs`` (``stop_sequence``: stop strings + tokenizer)."""
    if not stop:
        return kwargs
    return {**kwargs, "pipeline_kwargs": {**(kwargs.get("pipeline_kwargs") or {}), "stop_sequence": list(stop)}}


def cut_at_stop(text: str, stop: Sequence[str] | None) -> tuple[str, bool]:
    """``text`` up to (not including) the first occurrence of any stop string, and whether one occurred."""
    if not stop:
        return text, False
    cut = min((i for s in stop if s and (i := text.find(s)) >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def truncate_result(result: ChatResult, stop: Sequence[str] | None) -> ChatResult:
    """``result`` with each text answer cut at the first stop string (messages are copied, not changed)."""
    if not stop:
        return result
    generations = []
    for generation in result.generations:
        message = generation.message
        if isinstance(message.content, str):
            text, hit = cut_at_stop(message.content, stop)
            if hit:
                message = message.model_copy(update={"content": text})
        generations.append(ChatGeneration(message=message, generation_info=generation.generation_info))
    return ChatResult(generations=generations, llm_output=result.llm_output)


def stream_local_pipeline(
    chat: Any,
    messages: list[BaseMessage],
    stop: list[str] | None,
    run_manager: CallbackManagerForLLMRun | None,
    **kwargs: Any,
) -> Iterator[ChatGenerationChunk]:
    """Stream a ``ChatHuggingFace`` over a local pipeline, surfacing generation errors and honouring ``stop``.

    The pipeline runs in a thread that catches its error, wakes the reader and
    lets the reader re-raise it. A reader that stops early (or reaches a stop
    string) also stops the generation (a stopping criterion). Text is held back
    while it could be the start of a stop string, so nothing past a stop
    string is ever yielded.
    """
    from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

    pipe = chat.llm.pipeline
    prompt = chat._to_chat_prompt(messages)
    pipeline_kwargs = dict(stop_pipeline_kwargs(kwargs, stop).get("pipeline_kwargs") or {})
    cancelled = threading.Event()

    class _Cancel(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **_: Any) -> bool:
            return cancelled.is_set()

    streamer = TextIteratorStreamer(
        pipe.tokenizer, timeout=None, skip_prompt=kwargs.get("skip_prompt", True), skip_special_tokens=True
    )
    failure: list[BaseException] = []

    def generate() -> None:
        try:
            pipe(
                text_inputs=prompt,
                streamer=streamer,
                stopping_criteria=StoppingCriteriaList([_Cancel()]),
                **pipeline_kwargs,
            )
        except BaseException as err:  # reported to the reader below, not lost on stderr
            failure.append(err)
        finally:
            streamer.text_queue.put(streamer.stop_signal)  # wake the reader whatever happened

    def emit(text: str) -> ChatGenerationChunk:
        chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
        if run_manager:
            run_manager.on_llm_new_token(text, chunk=chunk)
        return chunk

    # Longest tail that could still grow into a stop string; held back until decided.
    hold = max((len(s) for s in stop or () if s), default=1) - 1
    pending = ""
    # A model whose answers carry template residue (a leading space, the line break that stopped it) streams
    # without it, as its non-streamed answer does: leading whitespace is dropped, trailing whitespace waits
    # for more text (and is dropped at the end).
    strip = bool(getattr(pipe, "strip_answer", False))
    started = False
    thread = threading.Thread(target=generate, name="energyrouter-generate", daemon=True)
    thread.start()
    try:
        for text in streamer:
            if failure:
                break
            pending += text
            if strip and not started:
                pending = pending.lstrip()
            pending, hit = cut_at_stop(pending, stop)
            if hit:
                cancelled.set()
                pending = pending.rstrip() if strip else pending
                if pending:
                    yield emit(pending)
                pending = ""
                break
            ready = (len(pending.rstrip()) if strip else len(pending)) - hold
            if ready > 0:
                started = True
                yield emit(pending[:ready])
                pending = pending[ready:]
        thread.join()
        if failure:
            raise failure[0]
        pending = pending.rstrip() if strip else pending
        if pending:
            yield emit(pending)
    finally:
        cancelled.set()
