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
when one object is used from several threads at once. Prompt counts are
memoised per tokenizer group (one tokenizer and chat template) and
conversation: candidates sharing a tokenizer are counted once, and a
conversation counted before costs a dictionary lookup. Bound tools are
rendered by templates that take ``tools=``.

Nothing here imports ``transformers`` or ``torch``.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Collection, Hashable, Mapping, Sequence
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
    "conversation_key",
    "find_tokenizer",
    "message_text",
    "messages_to_dicts",
    "prompt_text",
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
    """The text a message carries, plus its tool calls' names and arguments as JSON (an AI message's: on another
    message ``tool_calls`` is an unchecked extra field, e.g. an OpenAI ``developer`` message that carried one)."""
    text = str(message.text)
    tool_calls = message.tool_calls if isinstance(message, AIMessage) else None
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


class _Counting:
    """How one model is counted: its tokenizer (and the lock and memo group it shares), or a fallback."""

    __slots__ = ("group", "lock", "method", "tokenizer")

    def __init__(self, tokenizer: Any | None, lock: threading.Lock | None, method: str, group: Hashable) -> None:
        self.tokenizer = tokenizer
        self.lock = lock
        self.method = method
        self.group = group


def _tokenizer_group(tokenizer: Any) -> Hashable:
    """Models whose prompts count the same: one tokenizer (by identity, or by name, class, size) and template.

    Tokenizers loaded separately from one checkpoint are distinct objects; their
    ``name_or_path``, class and vocabulary size identify them. Tokenizers without
    a name (built in memory) are only shared by identity.
    """
    template = getattr(tokenizer, "chat_template", None)
    name = getattr(tokenizer, "name_or_path", None)
    if isinstance(name, str) and name:
        return (type(tokenizer).__qualname__, name, len(tokenizer), template)
    return (id(tokenizer), template)


def _encode_len(tokenizer: Any, text: str) -> int:
    """Tokens of ``text`` without special tokens; the fast tokenizer's Rust core when it is in its plain state.

    ``encode_batch`` of one text, not ``encode``: as fast, and it lets go of the GIL while it works, so counting a
    large prompt on one thread does not stall the others (a 900 KB prompt held it 0.6 s with ``encode``)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and backend.truncation is None and backend.padding is None:
        return len(backend.encode_batch([text], add_special_tokens=False)[0].ids)
    return len(tokenizer.encode(text, add_special_tokens=False))


class TokenCounter:
    """Counts tokens per model with that model's own tokenizer; thread-safe.

    Prompt counts are memoised in an LRU keyed by (tokenizer and chat
    template, conversation, tools): candidates sharing a tokenizer and template
    are counted once per call, and a conversation seen again (``explain`` then
    ``invoke``, a retry) is not rendered or encoded again.

    Args:
        models: name -> chat model; the same names are used in every call.
        cache_size: conversations remembered per tokenizer group, in all.

    Example:
        >>> counter = TokenCounter({"tiny-a": chat_a})
        >>> counter.count_messages("tiny-a", [HumanMessage("hello")])
    """

    def __init__(self, models: Mapping[str, BaseChatModel], *, cache_size: int = 256) -> None:
        self._models = dict(models)
        self._lock = threading.Lock()
        self._lookups: dict[str, _Counting] = {}
        self._tokenizer_locks: dict[int, threading.Lock] = {}
        self._memo: OrderedDict[Hashable, int] = OrderedDict()
        self._memo_lock = threading.Lock()
        self.cache_size = cache_size

    def method(self, name: str) -> str:
        """How ``name`` is counted: ``"tokenizer"``, ``"model"`` or ``"chars/4"``."""
        return self._lookup(name).method

    def _lookup(self, name: str) -> _Counting:
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
                    found = _Counting(tokenizer, lock, "tokenizer", _tokenizer_group(tokenizer))
                elif _overrides_counting(model):
                    found = _Counting(None, None, "model", ("model", name))
                else:
                    found = _Counting(None, None, "chars/4", ("chars/4",))
                self._lookups[name] = found
        return found

    def count_messages(
        self, name: str, messages: Sequence[BaseMessage], tools: Sequence[Mapping[str, Any]] | None = None
    ) -> int:
        """Prompt tokens of ``messages`` (and bound ``tools``, OpenAI format) for model ``name``.

        Raises:
            KeyError: ``name`` is not one of the models given at construction.
        """
        dicts = messages_to_dicts(messages)
        return self._count(name, messages, dicts, _conversation_key(dicts, tools), tools)

    def _count(
        self,
        name: str,
        messages: Sequence[BaseMessage],
        dicts: list[dict[str, str]],
        conversation: Hashable,
        tools: Sequence[Mapping[str, Any]] | None,
    ) -> int:
        how = self._lookup(name)
        key = (how.group, conversation)
        with self._memo_lock:
            count = self._memo.get(key)
            if count is not None:
                self._memo.move_to_end(key)
                return count
        count = self._count_uncached(name, how, messages, dicts, tools)
        with self._memo_lock:
            self._memo[key] = count
            while len(self._memo) > self.cache_size:
                self._memo.popitem(last=False)
        return count

    def _count_uncached(
        self,
        name: str,
        how: _Counting,
        messages: Sequence[BaseMessage],
        dicts: list[dict[str, str]],
        tools: Sequence[Mapping[str, Any]] | None,
    ) -> int:
        tokenizer, lock = how.tokenizer, how.lock
        if tokenizer is not None and lock is not None:
            with lock:
                text = None
                if getattr(tokenizer, "chat_template", None):
                    options: dict[str, Any] = {"tools": list(tools)} if tools else {}
                    try:
                        text = tokenizer.apply_chat_template(
                            dicts, tokenize=False, add_generation_prompt=True, **options
                        )
                    except Exception:  # a template may reject roles or orderings; count plain text then
                        text = None
                if not isinstance(text, str):
                    text = _plain_text(dicts, tools)
                return _encode_len(tokenizer, text)
        if how.method == "model":
            try:
                return int(self._models[name].get_num_tokens_from_messages(list(messages), tools=tools))
            except Exception:  # the model's own counter may need a package or data it lacks
                pass
        return _chars_to_tokens(_contents(dicts, tools))

    def count_text(self, name: str, text: str) -> int:
        """Tokens of a generated ``text`` for model ``name`` (no special tokens)."""
        if not text:
            return 0
        how = self._lookup(name)
        if how.tokenizer is not None and how.lock is not None:
            with how.lock:
                return _encode_len(how.tokenizer, text)
        if how.method == "model":
            try:
                return int(self._models[name].get_num_tokens(text))
            except Exception:  # see count_messages
                pass
        return _chars_to_tokens(text)

    def generation_steps(self, name: str, text: str, counted: int, *, capped: bool) -> int:
        """Decoding steps a local model took to write ``text`` (``counted`` tokens): what runtime scales with.

        Generation ends with a token the text may leave out: a special end-of-sequence token is
        stripped from the decoded text (one step more than counted), a plain-text one (Gemma's
        newline here) stays in it (counted already). A generation cut by its cap has no such token.
        Models without a Hugging Face tokenizer (endpoints) report their own usage: ``counted``.
        """
        how = self._lookup(name)
        if capped or how.tokenizer is None or how.lock is None:
            return counted
        model = getattr(getattr(getattr(self._models[name], "llm", None), "pipeline", None), "model", None)
        eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        eos_ids = {int(i) for i in (eos if isinstance(eos, (list, tuple)) else [eos]) if i is not None}
        if text and eos_ids:
            with how.lock:
                ids = how.tokenizer.encode(text, add_special_tokens=False)
            if ids and ids[-1] in eos_ids:
                return counted
        return counted + 1

    def count_all(
        self,
        messages: Sequence[BaseMessage],
        tools: Sequence[Mapping[str, Any]] | None = None,
        *,
        approximate: Collection[str] = (),
    ) -> dict[str, int]:
        """Prompt tokens of ``messages`` for every model, by name.

        Args:
            messages: the conversation.
            tools: tools bound for this call (OpenAI format), rendered by chat templates that take them.
            approximate: models only given characters / 4 (candidates excluded from this call anyway).
        """
        dicts = messages_to_dicts(messages)
        conversation = _conversation_key(dicts, tools)
        rough: int | None = None
        counts: dict[str, int] = {}
        for name in self._models:
            if name in approximate:
                if rough is None:
                    rough = _chars_to_tokens(_contents(dicts, tools))
                counts[name] = rough
            else:
                counts[name] = self._count(name, messages, dicts, conversation, tools)
        return counts


def conversation_key(
    messages: Sequence[BaseMessage],
    tools: Sequence[Mapping[str, Any]] | None = None,
    task_type: str | None = None,
    output_cap: Hashable = None,
) -> Hashable:
    """A short digest of everything that shapes an answer's length: every turn (system prompt and history
    included), the tools, the task type and the output cap. Repeats are remembered under it (16 bytes, whatever
    the prompt's size). ``output_cap`` is one cap or a hashable form of per-candidate caps."""
    turns = repr(_conversation_key(messages_to_dicts(messages), tools)).encode("utf-8", "surrogatepass")
    return hashlib.blake2b(turns, digest_size=16).digest(), task_type, output_cap


def _conversation_key(dicts: list[dict[str, str]], tools: Sequence[Mapping[str, Any]] | None) -> Hashable:
    turns = tuple((d["role"], d["content"]) for d in dicts)
    return (turns, json.dumps(list(tools), sort_keys=True, default=str) if tools else None)


def _contents(dicts: list[dict[str, str]], tools: Sequence[Mapping[str, Any]] | None) -> str:
    text = "\n".join(d["content"] for d in dicts)
    if tools:
        text += "\n" + json.dumps(list(tools), default=str)
    return text


def _plain_text(dicts: list[dict[str, str]], tools: Sequence[Mapping[str, Any]] | None) -> str:
    text = "\n".join(f"{d['role']}: {d['content']}" for d in dicts)
    if tools:
        text += "\n" + json.dumps(list(tools), default=str)
    return text


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


def prompt_text(messages: Any) -> str:
    """The text per-prompt features read: the last user turn (the question being asked), else everything."""
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return message_text(message)
    return "\n".join(message_text(m) for m in messages)
