"""One routed call: planned from the call's options, the order to try candidates in, and what each attempt did.

:meth:`EnergyAwareRouter.plan <langchain_energyrouter.router.EnergyAwareRouter.plan>` returns a
:class:`RoutedCall` without running a model. A caller that needs the decision before the answer
(a server setting headers, refusing with 429 when everything is full) passes it back to the run,
``router.ainvoke(messages, routed=call)`` (also ``invoke``, ``stream``, ``astream``): the call is
decided once, its metadata says *routed*, and the router falls back down the ranking itself.

A caller that runs the candidates itself (the agent middleware) drives the attempts with the same
methods the router uses::

    call = router.plan(messages, tools=tools)
    for name in call.order:
        attempt = call.attempt(name)          # None: refused by the call's admission
        if attempt is None:
            continue
        try:
            answer = run(call.candidates[name])
        except BaseException as err:
            if not call.failed(name, err, attempt.end()):
                raise
            continue
        metadata, usage = call.metadata(name, attempt.end(), provider_name)
        ...                                   # call.learn(name, reading, usage, text)
    raise call.all_failed()

Admission (``admission=`` on ``plan`` or the run): an object with ``try_acquire(name) -> bool`` and
``release(name)``, asked before each attempt and released when the attempt ends (e.g. a server's
per-candidate slots); one that also has ``close()`` gets it when the call is closed (to give back what it
holds for the call, such as a place reserved before the first attempt). A refused candidate is skipped
(``routing["busy"]``); when every candidate left was refused,
:class:`~langchain_energyrouter.errors.CandidatesBusyError`.

Planning: :func:`plan_call` reads a call's keywords (``weights``, ``model``, ``constraints``, ``task_type``,
``exclude``, ``max_tokens``, ``tools``, ``admission``), counts the prompt's tokens per candidate, asks per-prompt
routing for its estimate, and lets the scheduler decide; :func:`resume_call` runs a call planned earlier
(``router.plan(...)`` then ``invoke(routed=call)``); :func:`candidate_call` turns the decision into the
keywords one candidate understands (its output cap, stop strings and tools in its own form).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

from langchain_energyrouter.errors import CandidatesBusyError, NoFeasibleModelError, RoutingError, UnknownModelError
from langchain_energyrouter.learn.background import LengthObservation
from langchain_energyrouter.router.candidates import check_names, local_pipeline, tool_kwargs
from langchain_energyrouter.router.local_stream import stop_pipeline_kwargs
from langchain_energyrouter.router.settings import ROUTING_OPTIONS
from langchain_energyrouter.router.tokens import conversation_key, prompt_text, request_output_cap

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import BaseMessage

    from langchain_energyrouter.decide.scheduler import Decision
    from langchain_energyrouter.energy.base import EnergyReading
    from langchain_energyrouter.router.live import Attempt
    from langchain_energyrouter.router.parts import RouterParts

__all__ = ["Admission", "PlanDefaults", "RoutedCall", "candidate_call", "plan_call", "resume_call"]


@runtime_checkable
class Admission(Protocol):
    """Per-candidate admission of a call's attempts (e.g. a server's limit of requests in flight)."""

    def try_acquire(self, name: str) -> bool:
        """Take a place for one attempt on ``name``; False when it has none free."""
        ...

    def release(self, name: str) -> None:
        """Give back the place taken for an attempt on ``name``."""
        ...


@dataclass(repr=False, eq=False)
class RoutedCall:
    """One call's decision and its attempts (see the module doc). Used for one run only."""

    parts: RouterParts
    """The router's state when the call was planned (a later settings change does not affect this call)."""
    decision: Decision
    order: list[str]
    """Models to try, in order (the decision's choice first)."""
    can_fall_back: bool
    kwargs: dict[str, Any]
    """Keywords forwarded to the candidate (routing options removed)."""
    output_cap: int | Mapping[str, int | None] | None
    """The call's output cap: one for every candidate, or ``{name: cap}`` (None: the candidate's own budget)."""
    tools: list[dict[str, Any]] | None
    tool_choice: Any
    stop: list[str] | None
    fallback_on: tuple[type[BaseException], ...] = (Exception,)
    """Exception types that move on to the next candidate."""
    admission: Admission | None = None
    failures: list[dict[str, Any]] = field(default_factory=list)
    errors: dict[str, BaseException] = field(default_factory=dict)
    attempts: dict[str, Attempt] = field(default_factory=dict)
    busy: dict[str, str] = field(default_factory=dict)
    """Candidates the admission refused, and why."""
    run_id: str | None = None
    """The LangChain run id of this call (what :meth:`EnergyAwareRouter.feedback` takes)."""
    estimate: Any = None
    """This prompt's per-model estimates (:class:`~langchain_energyrouter.prompt.bandit.PromptEstimate`), if any."""
    started: bool = False
    """Whether a run has taken this call (a second run must plan again)."""
    prompt: str | None = None
    """The prompt's last user turn, kept only for a decision log that logs prompts."""

    def __repr__(self) -> str:  # short: it appears in LangChain's invocation params and traces
        return f"RoutedCall(model={self.decision.model!r}, order={self.order!r}, run_id={self.run_id!r})"

    @property
    def model(self) -> str:
        """The decision's choice."""
        return self.decision.model

    @property
    def candidates(self) -> Mapping[str, BaseChatModel]:
        """The router's candidates by name."""
        return self.parts.candidates

    def cap_for(self, name: str) -> int | None:
        """The output cap of candidate ``name`` in this call (None: its own configured budget)."""
        cap = self.output_cap
        return cap.get(name) if isinstance(cap, Mapping) else cap

    def calls_tools(self, name: str) -> bool:
        """Whether candidate ``name`` calls tools."""
        return name not in self.parts.tool_reasons

    # -- attempts ------------------------------------------------------------------
    def attempt(self, name: str, *, start_window: bool = True) -> Attempt | None:
        """Begin the try of ``name``: admitted, counted in flight and metered (from now, or from
        :meth:`Attempt.start_window <langchain_energyrouter.router.live.Attempt.start_window>` when
        ``start_window=False``); None when the admission refuses."""
        release: Callable[[str], None] | None = None
        if self.admission is not None:
            if not self.admission.try_acquire(name):
                self.busy[name] = "at its limit of requests in flight"
                return None
            release = self.admission.release
        try:
            meter = self.parts.meters.meter_for(name)
            attempt = self.parts.live.attempt(name, meter, release=release, start=start_window)
        except BaseException:
            if release is not None:
                release(name)
            raise
        self.attempts[name] = attempt
        return attempt

    def close(self) -> None:
        """End every attempt still open (idempotent): a caller that abandons the call frees its places."""
        for attempt in self.attempts.values():
            attempt.end()
        close = getattr(self.admission, "close", None)
        if callable(close):
            close()

    def failed(self, name: str, err: BaseException, reading: EnergyReading, *, may_fall_back: bool = True) -> bool:
        """Record a failed attempt and its reading; True when the next candidate may be tried."""
        if not isinstance(err, Exception):  # interrupted or closed by the caller: not a model failure
            return False
        self.errors[name] = err
        self.failures.append(
            {
                "model": name,
                "error_type": type(err).__name__,
                "error": str(err),
                "runtime_s": reading.runtime_s,
                "energy_j": reading.energy_j,
                "method": reading.method,
                "flags": list(reading.flags),
            }
        )
        if may_fall_back and self.can_fall_back and isinstance(err, self.fallback_on):
            return True
        err.routing_failures = list(self.failures)  # type: ignore[attr-defined]
        return False

    def all_failed(self) -> RoutingError:
        """The error to raise when no candidate answered (its ``__cause__`` is the last failure)."""
        if not self.errors:
            detail = ", ".join(f"{name} ({why})" for name, why in self.busy.items())
            error: RoutingError = CandidatesBusyError(
                f"No candidate could be tried: {detail}. Retry later, or raise the limit.", self.busy
            )
        else:
            detail = "; ".join(f"{name}: {type(err).__name__}: {err}" for name, err in self.errors.items())
            busy = f" (refused as busy: {', '.join(self.busy)})" if self.busy else ""
            error = RoutingError(
                f"Every candidate tried failed ({detail}){busy}. See RoutingError.failures; "
                "check the models, or pass fallback_on=() to see the first error directly.",
                self.errors,
            )
            error.__cause__ = list(self.errors.values())[-1]
        error.routing_failures = list(self.failures)  # type: ignore[attr-defined]
        log = self.parts.decision_log
        if log is not None:
            log.failed(self.decision, run_id=self.run_id, failures=self.failures, busy=self.busy, prompt=self.prompt)
        return error

    # -- the answer ----------------------------------------------------------------
    def metadata(
        self, name: str, reading: EnergyReading, provider_name: str | None
    ) -> tuple[dict[str, Any], Callable[[Mapping[str, Any] | None, str], dict[str, Any]]]:
        """``response_metadata`` for the answer of ``name``, and a usage builder."""
        rt = self.parts
        candidate = self.decision.candidates[name]
        routing = self.decision.as_dict()
        routing["served_by"] = name
        if name != self.decision.model:  # a fallback: the predictions beside the measurement are the server's
            routing.update(_predicted(candidate))
        routing["run_id"] = self.run_id
        routing["failures"] = list(self.failures)
        if self.busy:
            routing["busy"] = dict(self.busy)
        routing["measured_energy_j"] = reading.energy_j
        routing["measured_runtime_s"] = reading.runtime_s
        if self.estimate is not None and name in self.estimate.predicted_output_tokens:
            # The per-prompt length before repeat memory: how far off a new prompt's prediction would have been.
            caps = self.decision.max_output_tokens
            cap = caps.get(name) if isinstance(caps, Mapping) else caps
            routing["predicted_output_tokens_before_repeats"] = self.estimate.predicted_output_tokens[name].mean_tokens(
                cap
            )
        mismatch = rt.method_mismatch()
        if mismatch:
            routing["energy_method_mismatch"] = mismatch
        energy = reading.as_metadata()
        energy["predicted_energy_j"] = candidate.predicted_energy_j
        energy["predicted_runtime_s"] = candidate.predicted_runtime_s
        metadata = {"model_name": provider_name or rt.model_names[name], "routing": routing, "energy": energy}

        def usage(own: Mapping[str, Any] | None, output_text: str) -> dict[str, Any]:
            if own and own.get("total_tokens"):
                return dict(own)
            output_tokens = rt.counter.count_text(name, output_text)
            return {
                "input_tokens": candidate.input_tokens,  # the count the decision used: not counted twice
                "output_tokens": output_tokens,
                "total_tokens": candidate.input_tokens + output_tokens,
            }

        return metadata, usage

    def learn(self, name: str, reading: EnergyReading, usage: Mapping[str, Any], text: str) -> int | None:
        """Feed the answer's measurement to the learners (see :class:`~langchain_energyrouter.router.live.LiveState`)
        and the decision log; returns the generation steps it took (``routing["generated_tokens"]``)."""
        generated = self._learn(name, reading, usage, text)
        log = self.parts.decision_log
        if log is not None:
            log.answered(
                self.decision, name, reading, usage, generated,
                run_id=self.run_id, failures=self.failures, busy=self.busy, prompt=self.prompt, answer=text,
            )  # fmt: skip
        return generated

    def _learn(self, name: str, reading: EnergyReading, usage: Mapping[str, Any], text: str) -> int | None:
        counted = usage.get("output_tokens")
        if not isinstance(counted, int) or name not in self.attempts:
            return None
        rt = self.parts
        cap = self.cap_for(name)
        if cap is None:
            cap = rt.configured_caps.get(name)
        capped = cap is not None and counted >= cap
        generated = counted
        if local_pipeline(rt.candidates[name]) is not None:  # endpoints report their own generated tokens
            generated = rt.counter.generation_steps(name, text, counted, capped=capped)
        routing = rt.prompt_routing
        length = None
        if routing is not None and self.estimate is not None and self.run_id is not None:
            routing.remember(self.run_id, name, self.estimate)  # at once: feedback may follow the answer
            length = LengthObservation(routing, self.run_id, generated, capped)
        rt.live.observe(self.decision.candidates[name], self.attempts[name], reading, generated, cap, length)
        return generated


def _predicted(candidate: Any) -> dict[str, Any]:
    """The ``predicted_*`` keys of ``routing`` for ``candidate`` (as :meth:`Decision.as_dict` gives the choice's)."""
    return {
        "predicted_output_tokens": candidate.predicted_output_tokens,
        "predicted_output_tokens_median": candidate.output_tokens_median,
        "predicted_output_tokens_upper": candidate.output_tokens_upper,
        "predicted_runtime_s": candidate.predicted_runtime_s,
        "predicted_energy_j": candidate.predicted_energy_j,
    }


# -- planning -------------------------------------------------------------------
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
    rt: RouterParts,
    messages: list[BaseMessage],
    kwargs: dict[str, Any],
    stop: list[str] | None,
    defaults: PlanDefaults,
    *,
    run_id: str | None,
    started: bool,
    explore: bool = True,
) -> RoutedCall:
    """Decide a call; ``kwargs`` loses the routing options, what is left goes to the candidate.

    ``explore=False`` decides without exploring and spends none of the exploration budget (``explain``).

    Raises:
        UnknownModelError: ``model`` or ``exclude`` names a model the router does not have.
        NoFeasibleModelError: tools are bound and no candidate calls them, or every candidate is excluded
            or breaks a constraint.
    """
    admission = kwargs.pop("admission", None)
    options = {**defaults.ambient, **{key: kwargs.pop(key) for key in ROUTING_OPTIONS if key in kwargs}}
    cap: int | Mapping[str, int | None] | None = per_candidate_caps(kwargs, rt.candidates)
    if cap is None:
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
        conversation = conversation_key(
            messages, tools, task_type, tuple(sorted(cap.items())) if isinstance(cap, Mapping) else cap
        )
        estimate = rt.prompt_routing.predict(prompt_text(messages), max(counts.values()), task_type, conversation)
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
        prompt_length_observations=estimate.length_observations if estimate is not None else None,
        explorer=rt.explorer if explore else None,
    )
    can_fall_back = defaults.fallback and forced is None
    order = [decision.model]
    if can_fall_back:
        order += [name for name in decision.ranking if name != decision.model]
    log = rt.decision_log
    return RoutedCall(
        rt, decision, order, can_fall_back, kwargs, cap, tools, tool_choice, stop, defaults.fallback_on, admission,
        run_id=run_id, started=started, estimate=estimate,
        prompt=prompt_text(messages) if log is not None and log.prompts else None,
    )  # fmt: skip


def per_candidate_caps(kwargs: Mapping[str, Any], candidates: Mapping[str, Any]) -> dict[str, int | None] | None:
    """A call's ``max_tokens={name: cap}`` (each candidate's own cap; a name left out keeps its own budget),
    checked; None when ``max_tokens`` is not a mapping.

    Raises:
        UnknownModelError: it names a model the router does not have.
        ValueError: a cap is not a positive integer.
    """
    given = kwargs.get("max_tokens")
    if not isinstance(given, Mapping):
        return None
    check_names("max_tokens", list(given), candidates)
    for name, value in given.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"max_tokens[{name!r}]={value!r}; give a positive number of tokens or None.")
    return {name: given.get(name) for name in candidates}


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
    model = plan.parts.candidates[name]
    kwargs = dict(plan.kwargs)
    is_local_pipeline = local_pipeline(model) is not None
    if not is_local_pipeline:
        for key in _PIPELINE_ONLY_KWARGS:
            kwargs.pop(key, None)
    cap = plan.cap_for(name)
    if cap is not None:
        if is_local_pipeline:
            kwargs["pipeline_kwargs"] = {**(kwargs.get("pipeline_kwargs") or {}), "max_new_tokens": cap}
        else:
            kwargs["max_tokens"] = cap
    if is_local_pipeline:
        kwargs = stop_pipeline_kwargs(kwargs, plan.stop)
    if plan.tools:
        kwargs.update(tool_kwargs(model, plan.tools, plan.tool_choice))
    return model, kwargs
