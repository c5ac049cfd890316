"""What kind of model is a router candidate? Introspection that needs no import of its package.

Everything here is duck-typed: a ``ChatHuggingFace`` over a local
``HuggingFacePipeline`` is recognised by its attributes, so neither
``langchain_huggingface``, ``transformers`` nor ``torch`` is imported.

* :func:`local_pipeline` / :func:`runs_locally`: does the candidate run in this
  process (so a local meter can see its energy)?
* :func:`candidate_device`: the torch device its pipeline's weights are on
  (``"cuda:1"``, ``"cpu"``), which picks its meter.
* :func:`tool_incapability`: why it cannot call tools.
* :func:`named_models` / :func:`check_names` / :func:`tool_kwargs`: the router's
  constructor and per-call helpers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableBinding

from langchain_energyrouter.errors import UnknownModelError

_URL_ATTRS = ("endpoint_url", "inference_server_url", "base_url", "openai_api_base", "api_base", "api_url")

__all__ = [
    "candidate_device",
    "check_names",
    "local_pipeline",
    "model_name_of",
    "named_models",
    "pipeline_cannot_answer",
    "runs_locally",
    "tool_incapability",
    "tool_kwargs",
]


def local_pipeline(model: Any) -> Any | None:
    """The ``HuggingFacePipeline`` a ``ChatHuggingFace`` wraps, or None."""
    llm = getattr(model, "llm", None)
    if llm is not None and getattr(llm, "pipeline", None) is not None and hasattr(model, "_to_chat_prompt"):
        return llm
    return None


def _has_endpoint_url(obj: Any) -> bool:
    return any(isinstance(getattr(obj, attr, None), str) and getattr(obj, attr) for attr in _URL_ATTRS)


def runs_locally(model: Any) -> bool:
    """Whether a candidate spends its energy in this process's hardware (so a meter can see it)."""
    if local_pipeline(model) is not None:
        return True
    llm = getattr(model, "llm", None)
    if llm is not None and (_has_endpoint_url(llm) or type(llm).__name__ != "HuggingFacePipeline"):
        return False  # ChatHuggingFace over an endpoint, TGI or the Hub
    return not _has_endpoint_url(model)


def candidate_device(model: Any) -> str | None:
    """The torch device of a local pipeline's weights (``"cuda:0"``, ``"cpu"``), or None when unknown.

    A bare ``"cuda"`` device is reported with its index (``"cuda:0"``); a model
    split over several GPUs (``device_map="auto"``) reports them all, joined by
    commas (``"cuda:0,cuda:1"``).
    """
    llm = local_pipeline(model)
    if llm is None:
        return None
    weights = getattr(llm.pipeline, "model", None)
    device_map = getattr(weights, "hf_device_map", None)
    if isinstance(device_map, Mapping):
        gpus: set[int] = set()
        for placement in device_map.values():  # GPU index, "cuda:N", "cpu" or "disk"
            if isinstance(placement, int) and not isinstance(placement, bool):
                gpus.add(placement)
            elif isinstance(placement, str) and placement.startswith("cuda:") and placement[5:].isdigit():
                gpus.add(int(placement[5:]))
        if len(gpus) > 1:
            return ",".join(f"cuda:{i}" for i in sorted(gpus))
    device = getattr(weights, "device", None)
    if device is None:
        return None
    kind = getattr(device, "type", None)
    index = getattr(device, "index", None)
    if not isinstance(kind, str):
        return str(device)
    if kind == "cuda":
        return f"cuda:{index if isinstance(index, int) else 0}"
    return kind


def tool_incapability(model: Any) -> str | None:
    """Why a candidate cannot call tools, or None when it can."""
    if local_pipeline(model) is not None:
        return "local HuggingFacePipeline ignores tools (no tool calling)"
    if type(model).bind_tools is BaseChatModel.bind_tools:
        return f"{type(model).__name__} does not implement bind_tools"
    return None


def pipeline_cannot_answer(messages: Sequence[BaseMessage]) -> str | None:
    """Why a local pipeline cannot answer ``messages`` as they are, or None: ChatHuggingFace formats its prompt only
    from system, user and assistant messages of text, ending with a user message (it raises otherwise)."""
    if not messages:
        return None
    other = next((m for m in messages if not isinstance(m, (SystemMessage, HumanMessage, AIMessage))), None)
    if other is not None:
        return f"a local pipeline reads only system, user and assistant messages, not a {other.type} message"
    if any(not isinstance(m.content, str) for m in messages):  # a chat template formats text, not content blocks
        return "a local pipeline reads only text content, not a list of content blocks"
    if not isinstance(messages[-1], HumanMessage):
        return f"a local pipeline answers only a conversation that ends with a user message, not a {messages[-1].type}"
    return None


def model_name_of(model: Any) -> str | None:
    """The model's own name (``model_id``, ``model_name`` or ``model``), or None."""
    for attr in ("model_id", "model_name", "model"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    return None


def named_models(models: Any) -> dict[str, BaseChatModel]:
    """``{name: chat model}`` from a dict or a list named by each model's ``model_id``/``model_name``.

    Raises:
        TypeError: ``models`` is neither, or holds a ``.bind()`` result or a non-chat model.
        ValueError: no models, an empty or duplicate name, or an unnamed model in a list.
    """
    if isinstance(models, Mapping):
        items = list(models.items())
    elif isinstance(models, Sequence) and not isinstance(models, (str, bytes)):
        items = []
        for model in models:
            name = model_name_of(model)
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


def tool_kwargs(model: BaseChatModel, tools: list[dict[str, Any]], tool_choice: Any) -> dict[str, Any]:
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


def check_names(option: str, names: Sequence[str], candidates: Mapping[str, Any]) -> list[str]:
    """``names`` if every one is a candidate, else :class:`UnknownModelError` naming the option."""
    unknown = [n for n in names if n not in candidates]
    if unknown:
        raise UnknownModelError(f"{option} names unknown model(s) {unknown}; candidates are {list(candidates)}.")
    return list(names)
