"""``EnergyAwareRouter``: a LangChain chat model that routes each call to one of its models.

Per call the router counts the prompt's tokens with each candidate's own
tokenizer (:mod:`langchain_energyrouter.router.tokens`), asks the
:class:`~langchain_energyrouter.decide.scheduler.Scheduler` for a decision
(:mod:`~langchain_energyrouter.router.call`), and runs the chosen model inside an
energy-meter window as the *one* LLM run of the call
(:mod:`~langchain_energyrouter.router.execution`, which also lists what every result
carries: ``response_metadata["routing"]``, ``["energy"]``, ``["model_name"]``
and ``usage_metadata``).

Meters (:mod:`langchain_energyrouter.energy.metering`): one per device the candidates
run on (NVML for the GPU a pipeline is on, RAPL or the estimate for the CPU,
none for remote endpoints); a meter that fails degrades the reading to
method ``"none"`` with flag ``"meter_failed"``, never the answer.

Deciding first: :meth:`EnergyAwareRouter.plan` returns the call's
:class:`~langchain_energyrouter.router.call.RoutedCall` (decision and fallback order) without running a model;
``invoke(..., routed=call)`` (and ``ainvoke``, ``stream``, ``astream``) runs exactly that decision.
``exclude={name: reason}`` rules candidates out of one call (routed, not forced: the reason shows in
``routing["excluded"]``) and ``admission=`` bounds each candidate's attempts
(see :mod:`~langchain_energyrouter.router.call`).

Tool calls: ``bind_tools`` binds OpenAI-format tools on the router; a call with
tools is routed only among candidates that really call tools (a local
``HuggingFacePipeline`` ignores tools; it is excluded with the reason), and the
tools are bound on the chosen candidate for that call.
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.chat_models import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult, Generation
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import ensure_config, var_child_runnable_config
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator
from typing_extensions import Self

from langchain_energyrouter.decide.exploration import ExplorationOptions, ExplorationStats
from langchain_energyrouter.decide.scheduler import DEFAULT_CONSTRAINT_QUANTILE, Decision, Scheduler
from langchain_energyrouter.decide.scoring import Constraints, Normalizer, Weights
from langchain_energyrouter.energy.base import EnergyMeter
from langchain_energyrouter.errors import RoutingError
from langchain_energyrouter.learn.options import OnlineOptions
from langchain_energyrouter.profile import EnergyProfile
from langchain_energyrouter.router import execution
from langchain_energyrouter.router.call import PlanDefaults, RoutedCall, plan_call, resume_call
from langchain_energyrouter.router.candidates import named_models
from langchain_energyrouter.router.execution import FLAG_CACHE_HIT
from langchain_energyrouter.router.parts import RouterParts
from langchain_energyrouter.router.settings import (
    DEFAULT_CONFIG_PREFIX,
    ROUTING_OPTIONS,
    RUN_ID_KEYWORD,
    capability_profile_only,
    configured_options,
    energy_profile_keyword,
    is_energy_profile,
)

__all__ = ["DEFAULT_CONFIG_PREFIX", "FLAG_CACHE_HIT", "ROUTING_OPTIONS", "EnergyAwareRouter"]


@functools.cache
def _own_fields() -> tuple[str, ...]:
    """The router's own settings: its fields that ``BaseChatModel`` does not have."""
    return tuple(name for name in EnergyAwareRouter.model_fields if name not in BaseChatModel.model_fields)


class EnergyAwareRouter(BaseChatModel):
    """A chat model that sends each call to the candidate the scheduler picks.

    Example:
        ```python
        router = EnergyAwareRouter(
            models={"smollm2-135m": chat_a, "gemma3-270m": chat_b},
            energy_profile="calibration/profiles/cpu-reference.json",  # profile= works too
            weights=Weights(accuracy=0.6, energy=0.3, time=0.1),
        )
        chain = prompt | router | StrOutputParser()
        router.invoke(messages, weights={"energy": 1.0})   # per call
        router.invoke(messages, model="gemma3-270m")       # forced route
        chain.invoke(x, config={"configurable": {"energyrouter_weights": {"energy": 1.0}}})
        router.explain(messages).model                     # decide without running
        call = router.plan(messages, exclude={"gemma3-270m": "busy"})
        router.invoke(messages, routed=call)               # run that decision (no second one)
        router.weights = {"energy": 1.0}                   # applies to later calls
        ```

    Per-call options (``weights``, ``model``, ``constraints``, ``task_type``,
    ``exclude``) are call keywords, ``.bind(...)`` keywords or ``config["configurable"]``
    keys named ``<config_prefix>_<option>`` (explicit keywords win). The
    configurable keys are read wherever the config is visible: ``invoke``,
    ``stream``, their async forms, ``batch``, and ``generate`` called inside a
    runnable (a chain step, a LangGraph node). ``max_tokens`` /
    ``max_new_tokens`` cap the output and reach the candidate in the form it
    understands (``pipeline_kwargs["max_new_tokens"]`` for a local pipeline).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, validate_assignment=True)

    models: dict[str, BaseChatModel]
    """Name -> ``BaseChatModel``; a list of chat models is named by their ``model_id``/``model_name``."""
    energy_profile: EnergyProfile
    """An :class:`EnergyProfile`, or the path of a profile JSON; must cover every model. The constructor also
    takes it as ``profile=`` (an energy profile or a path given there lands here). ``profile`` itself stays
    LangChain's capability profile, which the router derives from its candidates (see :meth:`capabilities`)
    so that ``create_agent(..., response_format=...)`` and the summarization middleware can read it."""
    weights: Weights = Field(default_factory=Weights.balanced)
    """Default weights: :class:`Weights`, a dict or an (accuracy, energy, time) tuple; None = balanced."""
    normalization: str | Normalizer | None = None
    """Scheduler normaliser: ``"minmax"``, ``"relative"``, ``"hybrid"`` or a callable. None (the default):
    ``"relative"`` when ``prompt_routing`` is set, so how much better a model is expected to be on *this*
    prompt keeps its size, else ``"minmax"`` (the original's; name it to keep it with per-prompt routing)."""
    constraints: Constraints = Field(default_factory=Constraints)
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
    meter: EnergyMeter | None = None
    """An :class:`~langchain_energyrouter.energy.EnergyMeter` for every local candidate (you close it);
    None = one meter per device, chosen and closed by the router
    (see :mod:`~langchain_energyrouter.energy.metering`)."""
    local_models: list[str] | None = None
    """Candidates metered locally; None = detected (endpoint-backed models are not)."""
    tool_models: list[str] | None = None
    """Candidates that call tools; None = detected (local pipelines do not)."""
    streaming: bool = False
    """Route ``invoke`` through the streaming path."""
    config_prefix: str = DEFAULT_CONFIG_PREFIX
    """Prefix of the ``configurable`` keys this router reads (give two routers in one graph different ones)."""
    learn: bool = True
    """Learn from every measured call: each answer updates its model's runtime, energy and answer-length
    predictions (the profile stays the prior; see :mod:`~langchain_energyrouter.learn.loop`)."""
    learn_in_background: bool = False
    """Learn on a writer thread, one store write per model per batch, so an answer never waits on the store
    (a server's choice); :meth:`feedback` and :meth:`flush_learning` wait for it, :meth:`close` applies the rest."""
    state_store: Any = None
    """Where learned state lives: None = in this router's memory; a path (or ``"default"``) = an SQLite
    file shared by every process on the host; or any :class:`~langchain_energyrouter.state.StateStore`."""
    online_options: OnlineOptions | None = None
    """Tuning of the online learners (forgetting, prior pull, drift detection); None = the defaults."""
    prompt_routing: Any = None
    """Per-prompt quality and answer length: a :class:`~langchain_energyrouter.prompt.bandit.PromptRouting`, a
    trained :class:`~langchain_energyrouter.prompt.predictor.PromptPredictor` or the path of one (``energyrouter
    train``). Its predictions replace the profile's accuracy and length for each prompt, and
    :meth:`feedback` teaches it. None = the profile's figures (per model and task type)."""
    engine_metrics: dict[str, str] | None = None
    """Candidate name -> URL of its serving engine's Prometheus ``/metrics`` (vLLM, TGI): the engine's own
    requests in flight then feed the load models. This router's own requests are always counted."""
    constraint_quantile: float = DEFAULT_CONSTRAINT_QUANTILE
    """``max_runtime_s`` / ``max_energy_j`` must hold at this quantile of the answer's length (0.9: nine
    answers in ten; 0.5: the median); predictions themselves are means."""
    exploration: ExplorationOptions | None = None
    """Explore where predictions are uncertain: now and then route to a candidate that could win given the
    uncertainty of its costs and length, within a share of calls and of expected extra joules (see
    :mod:`~langchain_energyrouter.decide.exploration`). True = the defaults (10% of calls, 5% extra joules),
    a dict of :class:`~langchain_energyrouter.decide.exploration.ExplorationOptions` fields, or None (off)."""
    decision_log: Any = None
    """One JSON line per call for ``energyrouter report`` (no prompt text unless asked): a path, a dict of options
    (``path``, ``max_bytes``, ``backups``, ``prompts``, ``fsync``) or a :class:`~langchain_energyrouter.router.
    decision_log.DecisionLog` (you close it); None = off (see :mod:`~langchain_energyrouter.router.decision_log`)."""

    _built_parts: RouterParts = PrivateAttr()
    _derived_capabilities: dict[str, Any] | None = PrivateAttr(default=None)

    def __init__(self, **kwargs: Any) -> None:
        """Validate the models against the profile and build the scheduler.

        Raises:
            TypeError: a model is not a ``BaseChatModel`` (e.g. a ``.bind()`` result).
            ValueError: no models, duplicate names, or bad constraints.
            ProfileError: the profile is unreadable or lacks a model.
            WeightsError: the weights are invalid.
        """
        try:
            super().__init__(**kwargs)
        except ValidationError as err:
            # Our own errors keep their type (ProfileError, WeightsError, ...) rather than pydantic's wrapper.
            causes = [e.get("ctx", {}).get("error") for e in err.errors()]
            if len(causes) == 1 and isinstance(causes[0], Exception):
                raise causes[0] from None
            raise

    # -- settings: coerced on construction and on assignment --------------------
    @model_validator(mode="before")
    @classmethod
    def _energy_profile_keyword(cls, data: Any) -> Any:
        """``profile=<energy profile or path>`` (this router's keyword before LangChain had a ``profile``)."""
        return energy_profile_keyword(data)

    @classmethod
    def model_construct(cls, _fields_set: set[str] | None = None, **values: Any) -> Self:
        """Pydantic's unvalidated construction, with ``profile=<energy profile>`` read as ``energy_profile``."""
        if is_energy_profile(values.get("profile")) and "energy_profile" not in values:
            values["energy_profile"] = values.pop("profile")
        return super().model_construct(_fields_set, **values)

    @field_validator("profile", mode="before")
    @classmethod
    def _capability_profile_only(cls, value: Any) -> Any:
        return capability_profile_only(value)

    @field_validator("models", mode="before")
    @classmethod
    def _name_models(cls, value: Any) -> dict[str, BaseChatModel]:
        return named_models(value)

    @field_validator("energy_profile", mode="before")
    @classmethod
    def _load_profile(cls, value: Any) -> EnergyProfile:
        return EnergyProfile.coerce(value)

    @field_validator("weights", mode="before")
    @classmethod
    def _coerce_weights(cls, value: Any) -> Weights:
        return Weights.coerce(value)

    @field_validator("constraints", mode="before")
    @classmethod
    def _coerce_constraints(cls, value: Any) -> Constraints:
        return Constraints.coerce(value, Constraints())

    @field_validator("exploration", mode="before")
    @classmethod
    def _coerce_exploration(cls, value: Any) -> ExplorationOptions | None:
        return ExplorationOptions.coerce(value)

    @model_validator(mode="after")
    def _build_parts(self) -> Self:
        """Derive the scheduler, counter and meters from the settings (again after each assignment), and the
        capability profile unless one was given."""
        return self._refresh()

    def _refresh(self) -> Self:
        """Rebuild the parts if one of the router's own settings changed (not after LangChain's own fields
        change: metadata, tags, callbacks...), then the capability profile."""
        rt = (self.__pydantic_private__ or {}).get("_built_parts")
        if rt is None or any(a is not b for a, b in zip(rt.settings, self.own_settings(), strict=True)):
            self._derive_parts()
        self._derive_capabilities()
        return self

    def own_settings(self) -> tuple[Any, ...]:
        """The values of this router's own fields (not LangChain's), which its parts are built from."""
        return tuple(self.__dict__.get(name) for name in _own_fields())

    def _derive_capabilities(self) -> None:
        """``profile`` from the candidates, unless the user gave one (a dict other than what was derived)."""
        derived = self._parts().capabilities()
        current = self.__dict__.get("profile")
        if current is None or current in (self._derived_capabilities, derived):  # equal: a copy of a derived one
            self._derived_capabilities = derived
            self.__dict__["profile"] = dict(derived)  # set as is: no second validation

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy with parts of its own (scheduler, counters, learning) built from the copy's settings."""
        private = self.__pydantic_private__ or {}
        rt = private.pop("_built_parts", None)  # not shared, not deep-copied: the copy derives its own
        try:
            copy = super().model_copy(update=update, deep=deep)
        finally:
            if rt is not None:
                private["_built_parts"] = rt
        return copy._refresh()

    def _set_model_profile(self) -> Self:  # type: ignore[override]
        """LangChain's own profile resolution is replaced by :meth:`_build_parts` (no re-validation)."""
        return self

    def capabilities(self) -> dict[str, Any]:
        """What every routed call can rely on, in LangChain's ``ModelProfile`` keys: the smallest context
        window of the candidates (``max_input_tokens``), whether tools can be bound (``tool_calling``: some
        candidate calls them; bound calls go only there), and no provider-native structured output
        (``create_agent`` then asks for it through a tool)."""
        return self._parts().capabilities()

    def _derive_parts(self) -> RouterParts:
        old = (self.__pydantic_private__ or {}).get("_built_parts")
        self._built_parts = rt = RouterParts(self, old)
        if old is not None:
            rt.meters.adopt(old.meters)
        return rt

    def _parts(self) -> RouterParts:
        try:
            return self._built_parts
        except AttributeError:  # built with model_construct(): derive the state on first use
            return self._derive_parts()

    # -- LangChain identity ---------------------------------------------------
    @property
    def _llm_type(self) -> str:
        return "energy-aware-router"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        rt = self._parts()
        normalization = rt.scheduler.normalization
        return {
            "models": {name: {"type": m._llm_type, "model": rt.model_names[name]} for name, m in rt.candidates.items()},
            "profile": rt.scheduler.profile.origin,
            "profile_sha256": rt.profile_digest,
            "weights": rt.scheduler.weights.as_dict(),
            "normalization": normalization,
            "constraints": dataclasses.asdict(rt.scheduler.constraints),
            "task_type": self.task_type,
            "max_tokens": self.max_tokens,
            "pareto": self.pareto,
            "on_infeasible": self.on_infeasible,
            "tool_models": sorted(n for n in rt.candidates if n not in rt.tool_reasons),
        }

    def _get_invocation_params(self, stop: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
        # Options from an ambient config (generate() inside a chain step) belong in cache keys and traces too.
        # The identity part is LangChain's own (``dict()``), computed once per settings: it costs ~0.1 ms.
        rt = self._parts()
        if rt.invocation_params is None:
            rt.invocation_params = self._dict_for_compat()
        kwargs.pop(RUN_ID_KEYWORD, None)  # an id, not a parameter: kept out of cache keys and traces
        return {**rt.invocation_params, "stop": stop, **self._ambient_options(), **kwargs}

    def _get_llm_string(self, stop: list[str] | None = None, **kwargs: Any) -> str:
        kwargs.pop(RUN_ID_KEYWORD, None)  # the cache key: every run has its own id
        return super()._get_llm_string(stop, **kwargs)

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        rt = self._parts()
        params["ls_provider"] = "energyrouter"
        forced = kwargs.get("model", self._ambient_options().get("model"))
        # The model is only known before the call when it is forced; the answer's model_name says the rest.
        if isinstance(forced, str) and forced:
            params["ls_model_name"] = rt.model_names.get(forced, forced)
        else:
            params["ls_model_name"] = self._llm_type
        params["ls_model_type"] = "chat"
        cap = kwargs.get("max_tokens", self.max_tokens)
        if isinstance(cap, int):
            params["ls_max_tokens"] = cap
        return params

    def _convert_cached_generations(self, cache_val: list[Generation]) -> list[ChatGeneration]:
        """Replayed answers: nothing ran, so no joules (method ``"none"``, flag ``cache_hit``), not the first call's."""
        generations = []
        for generation in super()._convert_cached_generations(cache_val):
            message = generation.message
            if "energy" in message.response_metadata:
                message = message.model_copy(
                    update={"response_metadata": execution.cache_hit_metadata(message.response_metadata)}
                )
            generations.append(ChatGeneration(message=message, generation_info=generation.generation_info))
        return generations

    @property
    def candidates(self) -> dict[str, BaseChatModel]:
        """The candidate models by name (a copy)."""
        return dict(self._parts().candidates)

    @property
    def scheduler(self) -> Scheduler:
        """The scheduler making the decisions."""
        return self._parts().scheduler

    # -- per-call options from config["configurable"] --------------------------
    # BaseChatModel.invoke/stream hand only callbacks, tags, metadata and run name/id to _generate/_stream:
    # configurable never reaches them, so these four lift the router's prefixed keys into keywords.
    def _lift(self, config: RunnableConfig | None, kwargs: dict[str, Any]) -> tuple[RunnableConfig, dict[str, Any]]:
        config = ensure_config(config)  # the explicit config over an ambient one (a LangGraph node's)
        run_id = config.get("run_id") or uuid.uuid4()  # LangChain's run gets this id too
        lifted = {**configured_options(config.get("configurable"), self.config_prefix), **kwargs}
        return {**config, "run_id": run_id}, {**lifted, RUN_ID_KEYWORD: str(run_id)}

    def _ambient_options(self) -> dict[str, Any]:
        config = var_child_runnable_config.get()
        return configured_options(config.get("configurable") if config else None, self.config_prefix)

    def invoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        config, kwargs = self._lift(config, kwargs)
        return super().invoke(input, config, stop=stop, **kwargs)

    async def ainvoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        config, kwargs = self._lift(config, kwargs)
        return await super().ainvoke(input, config, stop=stop, **kwargs)

    def stream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        config, kwargs = self._lift(config, kwargs)
        return super().stream(input, config, stop=stop, **kwargs)

    def astream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        config, kwargs = self._lift(config, kwargs)
        return super().astream(input, config, stop=stop, **kwargs)

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
        ``constraints``, ``task_type``, ``exclude``, ``max_tokens``, ``tools``). It never explores and
        spends none of the exploration budget: the decision shown is the one the costs alone make.
        """
        messages = self._convert_input(input).to_messages()
        return self._plan(messages, dict(kwargs), None, explore=False).decision

    def plan(self, input: LanguageModelInput, *, stop: list[str] | None = None, **kwargs: Any) -> RoutedCall:
        """Decide a call without running it: the decision, the fallback order, and the attempts to come.

        Pass the result back as ``invoke(input, routed=call)`` (or ``ainvoke``, ``stream``, ``astream``, with
        the same input) to run exactly this decision, once; or drive the attempts yourself (see
        :mod:`~langchain_energyrouter.router.call`).

        Args:
            input: the messages.
            stop: stop strings of the run.
            **kwargs: the per-call options of ``invoke`` (``weights``, ``model``, ``constraints``,
                ``task_type``, ``exclude``, ``max_tokens``, ``tools``, ``tool_choice``), ``admission``
                (an :class:`~langchain_energyrouter.router.call.Admission`), and keywords for the candidate.

        Raises:
            UnknownModelError: ``model`` or ``exclude`` names a model the router does not have.
            NoFeasibleModelError: every candidate is excluded or breaks a constraint.
            WeightsError: the weights are invalid.
        """
        messages = self._convert_input(input).to_messages()
        return self._plan(messages, dict(kwargs), stop)

    def exploration_stats(self) -> ExplorationStats | None:
        """What exploration has done so far (routed decisions, explored ones, their expected extra joules and
        the budget's base); None when ``exploration`` is off. ``explain`` is not counted."""
        explorer = self._parts().explorer
        return explorer.stats() if explorer is not None else None

    def flush_learning(self, timeout_s: float | None = 60.0) -> bool:
        """Wait until every measurement so far is learned from (with ``learn_in_background``); False on timeout."""
        return self._parts().live.flush(timeout_s)

    def _plan(
        self,
        messages: list[BaseMessage],
        kwargs: dict[str, Any],
        stop: list[str] | None,
        run_manager: CallbackManagerForLLMRun | AsyncCallbackManagerForLLMRun | None = None,
        *,
        explore: bool = True,
    ) -> RoutedCall:
        given_run_id = kwargs.pop(RUN_ID_KEYWORD, None)
        run_id = str(run_manager.run_id) if run_manager is not None else given_run_id
        routed = kwargs.pop("routed", None)
        if routed is not None:
            return resume_call(routed, kwargs, stop, run_id)
        defaults = PlanDefaults(
            self._ambient_options(), self.max_tokens, self.task_type, self.fallback, self.fallback_on
        )
        rt, started = self._parts(), run_manager is not None
        return plan_call(rt, messages, kwargs, stop, defaults, run_id=run_id, started=started, explore=explore)

    def close(self) -> None:
        """Close the meters, state store and decision log the router opened itself (not those passed in)."""
        rt = self._parts()
        rt.meters.close()
        rt.live.close()
        rt.close_decision_log()

    # -- feedback ----------------------------------------------------------------
    def feedback(self, run_id: Any, score: float, *, key: str | None = None) -> bool:
        """Teach the per-prompt quality predictor how good the answer of run ``run_id`` was.

        Args:
            run_id: the call's LangChain run id (``response_metadata["routing"]["run_id"]``, or the
                ``run_id`` a callback or LangSmith saw).
            score: 0 (wrong) to 1 (right).
            key: the feedback's name (e.g. LangSmith's feedback key), kept in the log.

        Returns:
            True when the predictor learned from it (False for a run it does not remember; the
            row is still appended to the store's feedback log).

        Raises:
            RoutingError: the router has no ``prompt_routing`` to learn with.
            ValueError: ``score`` is not a number in [0, 1].
        """
        rt = self._parts()
        routing = rt.prompt_routing
        if routing is None:
            raise RoutingError(
                f"Feedback for run {run_id!r} has nowhere to go: this router predicts quality per model, not per "
                "prompt. Pass prompt_routing= (a trained predictor from `energyrouter train`, or a PromptRouting)."
            )
        rt.live.flush()  # learn from the answers so far first (with learn_in_background), as inline learning would
        learned = bool(routing.feedback(str(run_id), score, key=key))
        rt.log_feedback(str(run_id), score, key, learned)
        return learned

    # -- generate and stream: run the planned call (see :mod:`~langchain_energyrouter.router.execution`) -------
    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return execution.generate(self._plan(messages, kwargs, stop, run_manager), messages, stop, run_manager)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        plan = self._plan(messages, kwargs, stop, run_manager)
        return await execution.agenerate(plan, messages, stop, run_manager)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        yield from execution.stream(self._plan(messages, kwargs, stop, run_manager), messages, stop, run_manager)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        plan = self._plan(messages, kwargs, stop, run_manager)
        async for chunk in execution.astream(plan, messages, stop, run_manager):
            yield chunk
