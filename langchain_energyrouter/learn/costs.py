"""Online cost learning: every measured call updates that model's runtime, energy and length predictions.

Hot path: standard library only (no numpy); one update costs a few microseconds.

:class:`CostLearner` manages every model of a profile: it routes a measurement to the
right learners (joules of one energy method never train a model fitted on another;
counter resets and 0 J below-resolution readings are not training data, nor is anything
of an overlapped reading but its length; measurements are divided by the load factor
first) and returns a :class:`LearnedCosts` snapshot the scheduler uses in place of the
prior's coefficients. Every learner has ``to_state()``
(a JSON-able dict) and ``from_state()`` for persistence.

The learners: :class:`~langchain_energyrouter.learn.linear.LinearCostLearner` (runtime and joules) and
:class:`~langchain_energyrouter.learn.length.OutputLengthLearner` (answer length); their tuning is
:class:`~langchain_energyrouter.learn.options.OnlineOptions`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from langchain_energyrouter.cost import Coefficients, CompiledModel, LoadTuple, load_factors, prior_length
from langchain_energyrouter.energy.base import FLAG_BELOW_RESOLUTION, FLAG_COUNTER_WENT_BACKWARDS, FLAG_OVERLAPPED
from langchain_energyrouter.errors import ProfileError, UnknownModelError
from langchain_energyrouter.learn.length import OutputLengthLearner
from langchain_energyrouter.learn.linear import DEFAULT_INPUT_SCALE, DEFAULT_OUTPUT_SCALE, LinearCostLearner
from langchain_energyrouter.learn.options import STATE_VERSION, OnlineOptions, check_version, finite

if TYPE_CHECKING:
    from langchain_energyrouter.profile import EnergyProfile

__all__ = ["CostLearner", "LearnedCosts"]


class LearnedCosts(NamedTuple):
    """What the online learners know about one model, for the scheduler.

    ``runtime`` and ``energy`` replace the prior's coefficients in the same linear form.
    """

    runtime: Coefficients | None
    """Runtime coefficients (s); None = use the prior's (fewer than ``min_obs`` observations), so a decision's
    ``sources`` and ``observations`` say "prior" until the learned figure is used."""
    energy: Coefficients | None
    """Energy coefficients (J); None = use the prior's (too few readings of the profile's method)."""
    output_log_shift: float | None
    """Learned residual of ``log1p(generated tokens)`` over the prior's length; None = the prior alone."""
    output_log_sigma: float | None
    """Learned spread of that residual; None = the prior's spread."""
    n_runtime: int
    n_energy: int
    n_length: int
    resets: int
    """Drift resets of the runtime and energy learners together."""


@dataclass
class _ModelLearners:
    runtime: LinearCostLearner
    energy: LinearCostLearner
    length: OutputLengthLearner
    compiled: CompiledModel
    """The profile entry, for the prior's length at each call's input."""
    load: LoadTuple | None = None


class CostLearner:
    """The online learners of every model in a profile (thread-safe).

    Args:
        profile: the prior: coefficients, training ranges, load model and energy method.
        options: tuning shared by every learner; see :class:`OnlineOptions`.

    Example:
        >>> learner = CostLearner(profile)
        >>> learner.observe("phi-3-mini", 12, 50, runtime_s=1.9, energy_j=310.0, method="nvml_poll")
        True
        >>> learner.snapshot("phi-3-mini").runtime  # coefficients for the scheduler
    """

    def __init__(self, profile: EnergyProfile, options: OnlineOptions | None = None) -> None:
        self.profile = profile
        self.options = options or OnlineOptions()
        self.energy_method: str = profile.energy_method
        self._learners: dict[str, _ModelLearners] = {}
        self._lock = threading.Lock()
        self.ignored: dict[str, int] = {}
        """Why parts of measurements were not learned from, and how often (e.g. ``"energy: method estimate"``)."""

    @property
    def models(self) -> list[str]:
        """The profile's model names."""
        return list(self.profile.models)

    def _entry(self, model: str) -> _ModelLearners:
        learners = self._learners.get(model)
        if learners is not None:
            return learners
        entry = self.profile.models.get(model)
        if entry is None:
            raise UnknownModelError(
                f"Model {model!r} is not in the profile ({sorted(self.profile.models)}); "
                "learn only from models the profile describes."
            )

        def make(cost_model: Any) -> LinearCostLearner:
            tin_range = cost_model.input_range
            tout_range = cost_model.output_range
            fit = cost_model.fit
            noise = fit.mape_holdout if fit is not None and fit.mape_holdout else 0.2
            return LinearCostLearner(
                cost_model.coefficients,
                input_scale=max(tin_range[1], 1.0) if tin_range else DEFAULT_INPUT_SCALE,
                output_scale=max(tout_range[1], 1.0) if tout_range else DEFAULT_OUTPUT_SCALE,
                options=self.options,
                noise=noise,
            )

        learners = _ModelLearners(
            make(entry.runtime),
            make(entry.energy),
            OutputLengthLearner(self.options),
            entry.compile(model),
            entry.load.compile() if entry.load is not None else None,
        )
        self._learners[model] = learners
        return learners

    def _ignore(self, reason: str) -> None:
        self.ignored[reason] = self.ignored.get(reason, 0) + 1

    def observe(
        self,
        model: str,
        input_tokens: float,
        output_tokens: float,
        runtime_s: float | None,
        energy_j: float | None,
        method: str,
        *,
        flags: Iterable[str] = (),
        load: float | None = 1,
        output_capped: bool = False,
    ) -> bool:
        """Learn from one measured call; return whether anything was learned.

        Args:
            model: the profile's name of the model that answered.
            input_tokens, output_tokens: prompt and *generated* tokens.
            runtime_s: measured wall time (None: not measured).
            energy_j: measured energy (None: not measured).
            method: the reading's energy method; joules train the energy model only when it
                equals the profile's ``energy_method`` (runtime learns whatever the method).
            flags: the reading's flags. ``counter_went_backwards``, ``overlapped`` (a whole
                device's energy, not this call's) and 0 J with ``below_resolution`` keep the
                joules out of training; ``overlapped`` keeps the runtime out too (the device
                was shared in a way the load model did not see).
            load: requests in flight on the model during the call, this one included; the
                measurement is divided by the profile's load factor first.
            output_capped: the generation hit the request's token cap (its length is censored).

        Raises:
            UnknownModelError: ``model`` is not in the profile.
        """
        flag_set = frozenset(flags)
        with self._lock:
            learners = self._entry(model)
            if not (finite(input_tokens, output_tokens) and input_tokens >= 0 and output_tokens >= 0):
                self._ignore("tokens: not finite or negative")
                return False
            runtime_factor, energy_factor = load_factors(learners.load, load)
            learned = False
            if runtime_s is None:
                self._ignore("runtime: not measured")
            elif FLAG_OVERLAPPED in flag_set:  # another call shared the device: its time is not this call's alone
                self._ignore("runtime: overlapped window")
            elif learners.runtime.update(input_tokens, output_tokens, runtime_s / runtime_factor):
                learned = True
            else:
                self._ignore("runtime: not finite or negative")
            reason = self._energy_problem(energy_j, method, flag_set)
            if reason is not None:
                self._ignore(reason)
            elif energy_j is not None and learners.energy.update(input_tokens, output_tokens, energy_j / energy_factor):
                learned = True
            else:
                self._ignore("energy: not finite or negative")
            prior = prior_length(learners.compiled, input_tokens)
            if learners.length.update(output_tokens, prior.mu, capped=output_capped):
                learned = True
            return learned

    def _energy_problem(self, energy_j: float | None, method: str, flags: frozenset[str]) -> str | None:
        if energy_j is None:
            return "energy: not measured"
        if method != self.energy_method:
            return f"energy: method {method} (profile measured {self.energy_method})"
        if FLAG_COUNTER_WENT_BACKWARDS in flags:
            return "energy: counter went backwards"
        if FLAG_OVERLAPPED in flags:
            return "energy: overlapped window (whole-device joules)"
        if FLAG_BELOW_RESOLUTION in flags and not energy_j > 0:
            return "energy: 0 J below the meter's resolution"
        return None

    def snapshot(self, model: str) -> LearnedCosts | None:
        """What has been learned about ``model``; None when nothing has.

        Runtime and energy coefficients are None (the prior's apply) until ``options.min_obs`` observations.

        Raises:
            UnknownModelError: ``model`` is not in the profile.
        """
        with self._lock:
            learners = self._learners.get(model)
            if learners is None:
                if model not in self.profile.models:
                    self._entry(model)  # raises UnknownModelError
                return None
            runtime, energy, length = learners.runtime, learners.energy, learners.length
            if runtime.n_obs == 0 and energy.n_obs == 0 and length.n_obs == 0:
                return None
            enough = self.options.min_obs
            return LearnedCosts(
                runtime=runtime.coefficients if runtime.n_obs >= enough else None,
                energy=energy.coefficients if energy.n_obs >= enough else None,
                output_log_shift=length.shift if length.n_obs >= enough else None,
                output_log_sigma=length.sigma,
                n_runtime=runtime.n_obs,
                n_energy=energy.n_obs,
                n_length=length.n_obs,
                resets=runtime.resets + energy.resets,
            )

    # -- persistence --------------------------------------------------------
    def model_state(self, model: str) -> dict[str, Any] | None:
        """One model's learned state as a JSON-able dict (None when nothing was learned)."""
        with self._lock:
            learners = self._learners.get(model)
            if learners is None:
                return None
            return {
                "version": STATE_VERSION,
                "energy_method": self.energy_method,
                "runtime": learners.runtime.to_state(),
                "energy": learners.energy.to_state(),
                "length": learners.length.to_state(),
            }

    def load_model_state(self, model: str, state: Mapping[str, Any]) -> None:
        """Restore one model's state from :meth:`model_state`'s dict.

        Raises:
            UnknownModelError: ``model`` is not in the profile.
            ProfileError: the state was learned from another energy method, or is malformed.
        """
        with self._lock:
            if model not in self.profile.models:
                self._entry(model)  # raises UnknownModelError
            try:
                check_version(state, "CostLearner")
                if state.get("energy_method") != self.energy_method:
                    raise ProfileError(
                        f"Learned state of {model!r} was learned from {state.get('energy_method')!r} joules, the "
                        f"profile measures {self.energy_method!r}; reset the learned state."
                    )
                entry = self.profile.models[model]
                self._learners[model] = _ModelLearners(
                    LinearCostLearner.from_state(state["runtime"], self.options),
                    LinearCostLearner.from_state(state["energy"], self.options),
                    OutputLengthLearner.from_state(state["length"], self.options),
                    entry.compile(model),
                    entry.load.compile() if entry.load is not None else None,
                )
            except (KeyError, ValueError) as err:
                if isinstance(err, ProfileError):
                    raise
                raise ProfileError(f"Learned state of {model!r} is malformed: {err}") from err

    def reset(self, model: str | None = None) -> None:
        """Forget what was learned about ``model`` (every model when None): back to the prior."""
        with self._lock:
            if model is None:
                self._learners.clear()
            else:
                self._learners.pop(model, None)

    def options_dict(self) -> dict[str, Any]:
        """The options as a JSON-able dict (for ``state show``)."""
        return asdict(self.options)
