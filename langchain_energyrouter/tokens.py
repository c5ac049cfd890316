"""Token counting with each candidate's own tokenizer (never the network).

Candidates tokenise differently, so the router counts a prompt once per
candidate. How a model is counted, best first:

1. **Its Hugging Face tokenizer** (``ChatHuggingFace.tokenizer``, or the
   tokenizer of the ``HuggingFacePipeline`` it wraps): the messages are rendered
   with the tokenizer's chat template (``apply_chat_template(...,
   add_generation_prompt=True)``) and the rendered text is encoded without
   adding special tokens again, which is what the local pipeline feeds the
   model. Without a chat template, or when the template rejects the
   conversation (a tool message, say), ``"role: content"`` lines are encoded.
2. **The model's own counter**, only where its class overrides
   ``get_num_tokens_from_messages`` / ``get_token_ids`` or sets
   ``custom_get_token_ids``. LangChain's inherited default is never used: it
   downloads a GPT-2 tokenizer (and counts 0 offline with transformers 5).
3. **Characters / 4**, rounded up (:data:`CHARS_PER_TOKEN`), a common rule of thumb.

Tokenizer lookups are cached per model name; a fast tokenizer is used under a
lock of its own, because Hugging Face fast tokenizers raise "Already borrowed"
when one object is used from several threads at once.

Nothing here imports ``transformers`` or ``torch``.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel, BaseLanguageModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

CHARS_PER_TOKEN = 4
"""The last-resort rule: one token per this many characters (rounded up)."""

OUTPUT_CAP_KWARGS = ("max_tokens", "max_new_tokens")
"""Call keywords read as the request's output cap, in order of precedence."""

__all__ = [
    "CHARS_PER_TOKEN",
    "OUTPUT_CAP_KWARGS",
    "TokenCounter",
    "configured_output_cap",
    "find_tokenizer",
    "message_text",
    "messages_to_dicts",
    "request_output_cap",
]


def find_tokenizer(model: Any) -> Any | None:
    """The Hugging Face tokenizer a chat model carries, or ``None``.

    Looks at ``model.tokenizer`` (``ChatHuggingFace``), then at
    ``model.llm.pipeline.tokenizer`` (a wrapped ``HuggingFacePipeline``).
    Never loads anything.
    """
    candidates = [getattr(model, "tokenizer", None)]
    pipe = getattr(getattr(model, "llm", None), "pipeline", None)
    candidates.append(getattr(pipe, "tokenizer", None))
    for tokenizer in candidates:
        if tokenizer is not None and callable(getattr(tokenizer, "encode", None)):
            return tokenizer
    return None


def _role(message: BaseMessage) -> str:
    if isinstance(message, SystemMessage):
        return "system"
    if isinstance(message, AIMessage):
        return "assistant"
    if isinstance(message, HumanMessage):
        return "user"
    if isinstance(message, ToolMessage):
        return "tool"
    if isinstance(message, FunctionMessage):
        return "function"
    if isinstance(message, ChatMessage):
        return message.role
    return message.type


def message_text(message: BaseMessage) -> str:
    """The text a message carries, plus its tool calls' names and arguments as JSON."""
    text = str(message.text)
    tool_calls = getattr(message, "tool_calls", None)
    if tool_calls:
        text += json.dumps([{"name": c["name"], "args": c["args"]} for c in tool_calls], default=str)
    return text


def messages_to_dicts(messages: Sequence[BaseMessage]) -> list[dict[str, str]]:
    """``{"role", "content"}`` dicts for a chat template; content is the message's text."""
    return [{"role": _role(m), "content": message_text(m)} for m in messages]


def _overrides_counting(model: Any) -> bool:
    if getattr(model, "custom_get_token_ids", None) is not None:
        return True
    cls = type(model)
    return (
        getattr(cls, "get_num_tokens_from_messages", None) is not BaseLanguageModel.get_num_tokens_from_messages
        or getattr(cls, "get_token_ids", None) is not BaseLanguageModel.get_token_ids
    )


def _chars_to_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


class TokenCounter:
    """Counts tokens per model with that model's own tokenizer; thread-safe.

    Args:
        models: name -> chat model; the same names are used in every call.

    Example:
        >>> counter = TokenCounter({"tiny-a": chat_a})
        >>> counter.count_messages("tiny-a", [HumanMessage("hello")])
    """

    def __init__(self, models: Mapping[str, BaseChatModel]) -> None:
        self._models = dict(models)
        self._lock = threading.Lock()
        # name -> (tokenizer or None, lock for that tokenizer, method name)
        self._lookups: dict[str, tuple[Any | None, threading.Lock | None, str]] = {}
        self._tokenizer_locks: dict[int, threading.Lock] = {}

    def method(self, name: str) -> str:
        """How ``name`` is counted: ``"tokenizer"``, ``"model"`` or ``"chars/4"``."""
        return self._lookup(name)[2]

    def _lookup(self, name: str) -> tuple[Any | None, threading.Lock | None, str]:
        found = self._lookups.get(name)
        if found is not None:
            return found
        with self._lock:
            found = self._lookups.get(name)
            if found is None:
                model = self._models[name]
                tokenizer = find_tokenizer(model)
                if tokenizer is not None:
                    # One lock per tokenizer object: two names may share one tokenizer.
                    lock = self._tokenizer_locks.setdefault(id(tokenizer), threading.Lock())
                    found = (tokenizer, lock, "tokenizer")
                elif _overrides_counting(model):
                    found = (None, None, "model")
                else:
                    found = (None, None, "chars/4")
                self._lookups[name] = found
        return found

    def count_messages(self, name: str, messages: Sequence[BaseMessage]) -> int:
        """Prompt tokens of ``messages`` for model ``name``.

        Raises:
            KeyError: ``name`` is not one of the models given at construction.
        """
        tokenizer, lock, how = self._lookup(name)
        if tokenizer is not None and lock is not None:
            dicts = messages_to_dicts(messages)
            with lock:
                text = None
                if getattr(tokenizer, "chat_template", None):
                    try:
                        text = tokenizer.apply_chat_template(dicts, tokenize=False, add_generation_prompt=True)
                    except Exception:  # a template may reject roles or orderings; count plain text then
                        text = None
                if not isinstance(text, str):
                    text = "\n".join(f"{d['role']}: {d['content']}" for d in dicts)
                return len(tokenizer.encode(text, add_special_tokens=False))
        if how == "model":
            try:
                return int(self._models[name].get_num_tokens_from_messages(list(messages)))
            except Exception:  # the model's own counter may need a package or data it lacks
                pass
        return _chars_to_tokens("\n".join(message_text(m) for m in messages))

    def count_text(self, name: str, text: str) -> int:
        """Tokens of a generated ``text`` for model ``name`` (no special tokens)."""
        if not text:
            return 0
        tokenizer, lock, how = self._lookup(name)
        if tokenizer is not None and lock is not None:
            with lock:
                return len(tokenizer.encode(text, add_special_tokens=False))
        if how == "model":
            try:
                return int(self._models[name].get_num_tokens(text))
            except Exception:  # see count_messages
                pass
        return _chars_to_tokens(text)

    def count_all(self, messages: Sequence[BaseMessage]) -> dict[str, int]:
        """Prompt tokens of ``messages`` for every model, by name."""
        return {name: self.count_messages(name, messages) for name in self._models}


def request_output_cap(kwargs: Mapping[str, Any]) -> int | None:
    """The output cap a call asks for: ``max_tokens``, ``max_new_tokens`` or ``pipeline_kwargs["max_new_tokens"]``."""
    for key in OUTPUT_CAP_KWARGS:
        value = kwargs.get(key)
        if value is not None:
            return int(value)
    pipeline_kwargs = kwargs.get("pipeline_kwargs")
    if isinstance(pipeline_kwargs, Mapping) and pipeline_kwargs.get("max_new_tokens") is not None:
        return int(pipeline_kwargs["max_new_tokens"])
    return None


def configured_output_cap(model: Any) -> int | None:
    """The output cap a chat model is configured with, or ``None`` when it has none.

    Reads ``max_tokens`` / ``max_new_tokens`` of the model (and of a wrapped
    ``llm``), then a wrapped ``HuggingFacePipeline``'s generation settings
    (``max_new_tokens`` given to ``pipeline(...)``, then the model's
    ``generation_config``).
    """
    llm = getattr(model, "llm", None)
    for owner in (model, llm):
        for attr in ("max_tokens", "max_new_tokens"):
            value = getattr(owner, attr, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    pipe = getattr(llm, "pipeline", None)
    if pipe is None:
        return None
    # transformers keeps pipeline(..., max_new_tokens=n) in private dicts; read them defensively.
    for attr in ("_generate_kwargs", "_forward_params"):
        params = getattr(pipe, attr, None)
        if isinstance(params, Mapping) and isinstance(params.get("max_new_tokens"), int):
            return int(params["max_new_tokens"])
    generation_config = getattr(getattr(pipe, "model", None), "generation_config", None)
    value = getattr(generation_config, "max_new_tokens", None)
    if isinstance(value, int) and value > 0:
        return value
    defaults = getattr(pipe, "_generation_defaults", None)
    if isinstance(defaults, Mapping) and isinstance(defaults.get("max_new_tokens"), int):
        return int(defaults["max_new_tokens"])
    return None
