"""Deciding one call: the router's per-call options -> a :class:`~langchain_energyrouter.routed.RoutedCall`.

:func:`plan_call` reads a call's keywords (``weights``, ``model``, ``constraints``, ``task_type``, ``exclude``,
``max_tokens``, ``tools``, ``admission``), counts the prompt's tokens per candidate, asks per-prompt routing for
its estimate, and lets the scheduler decide; :func:`resume_call` runs a call planned earlier
(``router.plan(...)`` then ``invoke(routed=call)``); :func:`candidate_call` turns the decision into the
keywords one candidate understands (its output cap, stop strings and tools in its own form).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from langchain_energyrouter.candidates import check_names, local_pipeline, tool_kwargs
from langchain_energyrouter.errors import NoFeasibleModelError, RoutingError, UnknownModelError
from langchain_energyrouter.live import prompt_text
from langchain_energyrouter.local_stream import stop_pipeline_kwargs
from langchain_energyrouter.routed import RoutedCall
from langchain_energyrouter.tokens import request_output_cap

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import BaseMessage

    from langchain_energyrouter.runtime import RouterRuntime

__all__ = ["ROUTING_OPTIONS", "PlanDefaults", "candidate_call", "plan_call", "resume_call"]

ROUTING_OPTIONS = ("weights", "model", "constraints", "task_type", "exclude")
"""Per-call options: call keywords, ``.bind(...)``, or ``config["configurable"]["<prefix>_<option>"]``."""

_PIPELINE_ONLY_KWARGS = ("pipeline_kwargs", "skip_prompt")


class PlanDefaults(NamedTuple):
    """The router's settings a call falls back on."""

    ambient: Mapping[str, Any]
    """Routing options of the config the call runs in (a chain step's ``configurable``)."""
    max_tokens: int | None
    task_type: str | None
    fallback: bool
    fallback_on: tuple[type[BaseException], ...]


def plan_call(
    rt: RouterRuntime,
    messages: list[BaseMessage],
    kwargs: dict[str, Any],
    stop: list[str] | None,
    defaults: PlanDefaults,
    *,
    run_id: str | None,
    started: bool,
) -> RoutedCall:
    """Decide a call; ``kwargs`` loses the routing options, what is left goes to the candidate.

    Raises:
        UnknownModelError: ``model`` or ``exclude`` names a model the router does not have.
        NoFeasibleModelError: tools are bound and no candidate calls them, or every candidate is excluded
            or breaks a constraint.
    """
    admission = kwargs.pop("admission", None)
    options = {**defaults.ambient, **{key: kwargs.pop(key) for key in ROUTING_OPTIONS if key in kwargs}}
    cap = request_output_cap(kwargs)
    for key in ("max_tokens", "max_new_tokens"):
        kwargs.pop(key, None)
    if cap is None:
        cap = defaults.max_tokens
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
    asked = options.get("exclude") or {}
    if asked:
        asked = asked if isinstance(asked, Mapping) else dict.fromkeys(asked, "excluded by the caller")
        check_names("exclude", list(asked), rt.candidates)
        exclude = {**{name: str(why) for name, why in asked.items()}, **exclude}
    # Excluded candidates cannot win: characters / 4 is enough for their (reported) prediction.
    counts = rt.counter.count_all(messages, tools, approximate=exclude.keys() - {forced})
    task_type = options.get("task_type", defaults.task_type)
    estimate = None
    if rt.prompt_routing is not None:
        estimate = rt.prompt_routing.predict(prompt_text(messages), max(counts.values()), task_type)
    decision = rt.scheduler.decide(
        counts,
        cap if cap is not None else rt.configured_caps,
        weights=options.get("weights"),
        constraints=options.get("constraints"),
        task_type=task_type,
        exclude=exclude or None,
        force=forced,
        in_flight=rt.live.before_decision(rt.candidates),
        prompt_accuracy=estimate.accuracy if estimate is not None else None,
        prompt_output_tokens=estimate.output_tokens if estimate is not None else None,
    )
    can_fall_back = defaults.fallback and forced is None
    order = [decision.model]
    if can_fall_back:
        order += [name for name in decision.ranking if name != decision.model]
    return RoutedCall(
        rt, decision, order, can_fall_back, kwargs, cap, tools, tool_choice, stop, defaults.fallback_on, admission,
        run_id=run_id, started=started, estimate=estimate,
    )  # fmt: skip


def resume_call(routed: Any, kwargs: dict[str, Any], stop: list[str] | None, run_id: str | None) -> RoutedCall:
    """The run of a call planned by ``router.plan`` (its options were applied then; the run's are dropped).

    Raises:
        TypeError: ``routed`` is not a :class:`RoutedCall`.
        RoutingError: it has run already.
    """
    if not isinstance(routed, RoutedCall):
        raise TypeError(f"routed= takes the RoutedCall that router.plan(...) returned, got {type(routed).__name__}.")
    if routed.started:
        raise RoutingError(f"{routed!r} has run already; plan the call again for another run.")
    routed.started = True
    for key in (*ROUTING_OPTIONS, "admission", "tools", "tool_choice", "max_tokens", "max_new_tokens"):
        kwargs.pop(key, None)
    routed.kwargs.update(kwargs)
    if stop is not None:
        routed.stop = stop
    if run_id is not None:
        routed.run_id = run_id
    return routed


def candidate_call(name: str, plan: RoutedCall) -> tuple[BaseChatModel, dict[str, Any]]:
    """The candidate and the keywords to call it with (output cap, stop strings and tools in its own form).

    ``pipeline_kwargs`` / ``skip_prompt`` reach local pipelines only: an endpoint would reject them.
    """
    model = plan.rt.candidates[name]
    kwargs = dict(plan.kwargs)
    is_local_pipeline = local_pipeline(model) is not None
    if not is_local_pipeline:
        for key in _PIPELINE_ONLY_KWARGS:
            kwargs.pop(key, None)
    if plan.output_cap is not None:
        if is_local_pipeline:
            kwargs["pipeline_kwargs"] = {**(kwargs.get("pipeline_kwargs") or {}), "max_new_tokens": plan.output_cap}
        else:
            kwargs["max_tokens"] = plan.output_cap
    if is_local_pipeline:
        kwargs = stop_pipeline_kwargs(kwargs, plan.stop)
    if plan.tools:
        kwargs.update(tool_kwargs(model, plan.tools, plan.tool_choice))
    return model, kwargs
