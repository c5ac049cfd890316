"""The router's derived state: everything built from its settings, rebuilt when a setting changes.

:class:`RouterParts` holds the candidates, the scheduler, the token counter, the
meters per device, the live state (requests in flight, learning, the state store)
and the per-prompt routing of one router, built from its settings
(:class:`~langchain_energyrouter.router.settings.RouterSettings`), in one plain object
(pydantic private attributes are slow to read on the hot path).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from langchain_core.language_models import BaseChatModel

from langchain_energyrouter.decide.exploration import Explorer
from langchain_energyrouter.decide.scheduler import Scheduler
from langchain_energyrouter.energy.metering import CandidateMeters
from langchain_energyrouter.errors import ProfileError
from langchain_energyrouter.profile import EnergyProfile
from langchain_energyrouter.router.candidates import (
    candidate_device,
    check_names,
    model_name_of,
    named_models,
    runs_locally,
    tool_incapability,
)
from langchain_energyrouter.router.decision_log import DecisionLog
from langchain_energyrouter.router.live import LiveState
from langchain_energyrouter.router.settings import default_normalization
from langchain_energyrouter.router.tokens import TokenCounter, configured_output_cap

if TYPE_CHECKING:
    from langchain_energyrouter.router.settings import RouterSettings


class RouterParts:
    """The router's derived state, in one plain object (pydantic private attributes are slow to read)."""

    candidates: dict[str, BaseChatModel]
    configured_caps: dict[str, int | None]
    counter: TokenCounter
    decision_log: DecisionLog | None
    decision_log_setting: Any
    explorer: Explorer | None
    invocation_params: dict[str, Any] | None
    live: LiveState
    meters: CandidateMeters
    model_names: dict[str, str]
    owns_decision_log: bool
    profile_digest: str
    prompt_routing: Any
    prompt_routing_inputs: tuple[Any, ...]
    scheduler: Scheduler
    settings: tuple[Any, ...]
    tool_reasons: dict[str, str]

    __slots__ = (
        "_mismatch",
        "candidates",
        "configured_caps",
        "counter",
        "decision_log",
        "decision_log_setting",
        "explorer",
        "invocation_params",
        "live",
        "meters",
        "model_names",
        "owns_decision_log",
        "profile_digest",
        "prompt_routing",
        "prompt_routing_inputs",
        "scheduler",
        "settings",
        "tool_reasons",
    )

    def __init__(self, router: RouterSettings, old: RouterParts | None = None) -> None:
        """Build from the router's settings (coerced again, so a ``model_construct``-ed router works too).

        Raises:
            ProfileError: the profile lacks a model.
            UnknownModelError: ``local_models`` or ``tool_models`` names an unknown model.
        """
        self.candidates = candidates = named_models(router.models)
        profile = EnergyProfile.coerce(router.energy_profile)
        missing = [name for name in candidates if name not in profile.models]
        if missing:
            raise ProfileError(
                f"Profile {profile.origin} has no entry for model(s) {missing}. "
                f"Profiled models: {sorted(profile.models)}. "
                "Run `energyrouter calibrate` for them, or drop them from the router."
            )
        self.scheduler = Scheduler(
            profile,
            router.weights,
            default_normalization(router.normalization, router.prompt_routing),
            constraints=router.constraints,
            models=list(candidates),
            pareto=router.pareto,
            on_infeasible=router.on_infeasible,
            constraint_quantile=router.constraint_quantile,
        )
        exploring = router.exploration
        if exploring is None:
            self.explorer = None
        elif old is not None and old.explorer is not None and old.explorer.options == exploring:
            self.explorer = old.explorer  # its bounds count calls across settings changes
        else:
            self.explorer = Explorer(exploring)
        self._adopt_decision_log(router.decision_log, old)
        self.profile_digest = hashlib.sha256(profile.model_dump_json().encode()).hexdigest()[:16]
        self.counter = TokenCounter(candidates)
        self.model_names = {name: model_name_of(model) or name for name, model in candidates.items()}
        if router.local_models is not None:
            local = set(check_names("local_models", router.local_models, candidates))
        else:
            local = {n for n, m in candidates.items() if runs_locally(m)}
        self.meters = CandidateMeters(
            {n: (candidate_device(m) or "local") if n in local else None for n, m in candidates.items()}, router.meter
        )
        if router.tool_models is not None:
            capable = set(check_names("tool_models", router.tool_models, candidates))
            self.tool_reasons = {n: "not listed in tool_models" for n in candidates if n not in capable}
        else:
            self.tool_reasons = {n: why for n, m in candidates.items() if (why := tool_incapability(m)) is not None}
        # Without a cap in the call, each model's prediction is capped at its own configured budget.
        self.configured_caps = {name: configured_output_cap(m) for name, m in candidates.items()}
        self._mismatch: dict[str, dict[str, str]] | None = None
        self.invocation_params = None
        """The router's LangChain identity (``dict()``), filled on first use; a settings change rebuilds it."""
        self.settings = router.own_settings()
        """The router's settings this was built from (by identity: an assignment that changes none keeps it)."""
        check_names("engine_metrics", list(router.engine_metrics or {}), candidates)
        self.live = LiveState.create(
            self.scheduler,
            state_store=router.state_store,
            learn=router.learn,
            online_options=router.online_options,
            engine_metrics={n: (url, self.model_names[n]) for n, url in (router.engine_metrics or {}).items()},
            previous=old.live if old is not None else None,
            background=router.learn_in_background,
        )
        # Rebuilding per-prompt routing reloads the predictor file and forgets the runs kept for feedback:
        # keep it across a settings change that does not touch what it is built from.
        inputs = (router.prompt_routing, profile, tuple(candidates), self.live.store)
        if old is not None and _same_inputs(old.prompt_routing_inputs, inputs):
            self.prompt_routing = old.prompt_routing
        elif router.prompt_routing is None:
            self.prompt_routing = None
        else:  # numpy and the encoder load only when per-prompt routing is configured
            from langchain_energyrouter.prompt.routing import build_prompt_routing

            self.prompt_routing = build_prompt_routing(
                router.prompt_routing, profile, list(candidates), self.live.store
            )
        self.prompt_routing_inputs = inputs

    def _adopt_decision_log(self, setting: Any, old: RouterParts | None) -> None:
        """The log of the setting: the old one while the setting is the same object, a new one (the router's to
        close) for a path or options, the caller's own for a :class:`DecisionLog`."""
        if old is not None and old.decision_log_setting is setting:
            self.decision_log, self.owns_decision_log = old.decision_log, old.owns_decision_log
            self.decision_log_setting = setting
            return
        if old is not None:
            old.close_decision_log()  # a call still in flight on the old parts writes its line all the same
        self.decision_log_setting = setting
        self.decision_log = DecisionLog.coerce(setting)
        self.owns_decision_log = self.decision_log is not None and self.decision_log is not setting

    def close_decision_log(self) -> None:
        """Close the decision log if the router opened it."""
        if self.owns_decision_log and self.decision_log is not None:
            self.decision_log.close()

    def log_feedback(self, run_id: str, score: float, key: str | None, learned: bool) -> None:
        """Note a feedback score in the decision log, if there is one."""
        if self.decision_log is not None:
            self.decision_log.feedback(run_id, score, key=key, learned=learned)

    def method_mismatch(self) -> dict[str, dict[str, str]]:
        """Candidates whose live meter measures otherwise than the profile's energy data was measured."""
        if self._mismatch is None:
            expected = self.scheduler.profile.energy_method
            self._mismatch = {
                name: {"profile": expected, "meter": method}
                for name, method in self.meters.methods().items()
                if method != expected
            }
        return self._mismatch

    def capabilities(self) -> dict[str, Any]:
        """The router's LangChain capability profile (see ``EnergyAwareRouter.capabilities``)."""
        profile = self.scheduler.profile
        return {
            "max_input_tokens": min(profile.models[name].context_window for name in self.candidates),
            "tool_calling": len(self.tool_reasons) < len(self.candidates),
            "structured_output": False,
        }


def _same_inputs(old: tuple[Any, ...], new: tuple[Any, ...]) -> bool:
    """Same setting, profile and store objects (identity: a reloaded file is a change) and the same names."""
    (old_spec, old_profile, old_names, old_store), (spec, profile, names, store) = old, new
    return old_spec is spec and old_profile is profile and old_store is store and old_names == names


__all__ = ["RouterParts"]
