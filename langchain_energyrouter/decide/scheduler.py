"""The decision engine: ``Scheduler.decide(...) -> Decision`` (hot path, no LangChain inside).

Per request: predict each candidate's output tokens, runtime and energy from the
profile, drop candidates that break a constraint (or are Pareto-dominated, if
asked), normalise accuracy cost, energy and runtime across the rest, weigh them,
and pick the lowest score.

Ties are broken, in order, by higher accuracy, lower predicted energy, lower
predicted runtime, then model name (alphabetical), so the same inputs always give
the same decision and a dominated model never wins a tie.

Two things make a prediction about *this* moment rather than the calibration run:

- **Load**: ``decide(..., in_flight={model: n})`` scales each candidate's runtime and
  energy by its profile's load model (:func:`~langchain_energyrouter.cost.load_factors`).
- **Learned costs**: :meth:`Scheduler.set_learned` installs, per model, an adapted
  snapshot (e.g. :class:`~langchain_energyrouter.learn.costs.LearnedCosts`) whose
  coefficients and output length replace the prior's. Each candidate says where its
  predictions came from (``sources``) and from how many observations.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, NamedTuple, Protocol

from langchain_energyrouter.cost import Coefficients, CompiledModel, predict_costs, predict_output_tokens
from langchain_energyrouter.decide.scoring import (
    Constraints,
    Normalizer,
    Weights,
    WeightsLike,
    dominated_by,
    get_accuracy_normalizer,
    get_normalizer,
)
from langchain_energyrouter.errors import NoFeasibleModelError, UnknownModelError
from langchain_energyrouter.profile import EnergyProfile

OnInfeasible = Literal["raise", "least_violating"]

PRIOR = "prior"
ADAPTED = "adapted"
TASK = "task"
PROMPT = "prompt"
"""Values of :attr:`Candidate.sources`: the profile, the learned state, the profile's per-task
figures, a prediction for this prompt."""

_NO_TASKS: Mapping[str, float] = MappingProxyType({})
_UNSCORED: tuple[float | None, float | None, float | None, float | None] = (None, None, None, None)
_PRIOR_SOURCES: Mapping[str, str] = MappingProxyType(
    {"runtime": PRIOR, "energy": PRIOR, "output_tokens": PRIOR, "accuracy": PRIOR}
)

_NO_OBSERVATIONS: Mapping[str, int] = MappingProxyType({"runtime": 0, "energy": 0, "output_tokens": 0})
_SOURCES: Mapping[tuple[str, str, str, str], Mapping[str, str]] = MappingProxyType(
    {
        (r, e, o, a): MappingProxyType({"runtime": r, "energy": e, "output_tokens": o, "accuracy": a})
        for r in (PRIOR, ADAPTED)
        for e in (PRIOR, ADAPTED)
        for o in (PRIOR, ADAPTED, TASK, PROMPT)
        for a in (PRIOR, TASK, PROMPT)
    }
)
"""Every possible ``sources`` value, built once: a decision allocates none."""


_Row = tuple[str, int, float, float, float, float, tuple[str, ...], Any, Mapping[str, str], Mapping[str, int]]
"""(name, tin, tout, runtime_s, energy_j, accuracy, flags, in_flight, sources, observations)."""


class LearnedSnapshot(Protocol):
    """What the scheduler reads of a learned (adapted) model; ``None`` fields fall back to the prior."""

    @property
    def runtime(self) -> Coefficients | None: ...
    @property
    def energy(self) -> Coefficients | None: ...
    @property
    def output_tokens(self) -> float | None: ...
    @property
    def n_runtime(self) -> int: ...
    @property
    def n_energy(self) -> int: ...
    @property
    def n_length(self) -> int: ...


class Candidate(NamedTuple):
    """One model's predictions and score for one request (a NamedTuple: cheap to build)."""

    model: str
    input_tokens: int
    predicted_output_tokens: float
    predicted_runtime_s: float
    predicted_energy_j: float
    accuracy: float
    accuracy_term: float | None = None
    """Normalised accuracy cost (``1 - accuracy``); None when excluded."""
    energy_term: float | None = None
    time_term: float | None = None
    score: float | None = None
    """Weighted sum of the terms; lower is better; None when excluded."""
    excluded: str | None = None
    """Why the candidate was not eligible, or None."""
    flags: tuple[str, ...] = ()
    """E.g. ``runtime_clamped`` when a prediction was negative and clamped to 0, ``extrapolated``
    outside the fit's token ranges, ``load_extrapolated`` beyond the measured load."""
    in_flight: float | None = None
    """Requests in flight on this model when deciding, this one included (None: not known)."""
    sources: Mapping[str, str] = _PRIOR_SOURCES
    """Where each prediction came from: ``{"runtime"|"energy"|"output_tokens"|"accuracy":
    "prior"|"adapted"|"task"|"prompt"}``."""
    observations: Mapping[str, int] = _NO_OBSERVATIONS
    """Observations behind each adapted prediction (0 for the prior)."""

    def as_dict(self) -> dict[str, Any]:
        out = self._asdict()
        del out["model"]
        out["flags"] = list(self.flags)
        out["sources"] = dict(self.sources)
        out["observations"] = dict(self.observations)
        return out


@dataclass(frozen=True, slots=True)
class Decision:
    """The scheduler's choice for one request, with everything behind it."""

    model: str
    """The chosen model's name."""
    candidates: Mapping[str, Candidate]
    ranking: tuple[str, ...]
    """Eligible candidates, best first (the router's fallback order)."""
    weights: Weights
    normalization: str
    energy_method: str
    """How the profile's energy data was obtained (``estimate`` means predicted joules are estimates too)."""
    max_output_tokens: int | Mapping[str, int | None] | None = None
    task_type: str | None = None
    forced: bool = False
    """True when the caller named the model (``model=...``) instead of letting the scheduler choose."""
    note: str | None = None
    """E.g. why the least-violating candidate was taken when nothing was feasible."""
    excluded: Mapping[str, str] = field(default_factory=dict)

    @property
    def chosen(self) -> Candidate:
        return self.candidates[self.model]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able summary (what the router puts in ``response_metadata["routing"]``)."""
        chosen = self.candidates[self.model]
        return {
            "model": self.model,
            "forced": self.forced,
            "weights": self.weights.as_dict(),
            "normalization": self.normalization,
            "energy_method": self.energy_method,
            "max_output_tokens": (
                dict(self.max_output_tokens) if isinstance(self.max_output_tokens, Mapping) else self.max_output_tokens
            ),
            "task_type": self.task_type,
            "predicted_output_tokens": chosen.predicted_output_tokens,
            "predicted_runtime_s": chosen.predicted_runtime_s,
            "predicted_energy_j": chosen.predicted_energy_j,
            "ranking": list(self.ranking),
            "excluded": dict(self.excluded),
            "note": self.note,
            "candidates": {name: c.as_dict() for name, c in self.candidates.items()},
        }


class Scheduler:
    """Chooses a model per request from a profile, weights and constraints.

    Args:
        profile: the coefficient file (or its path).
        weights: default weights; override per call in :meth:`decide`.
        normalization: ``"minmax"``, ``"relative"``, ``"hybrid"`` or a callable.
        constraints: default hard limits; override per call.
        models: restrict to these profiled models (default: all in the profile).
        pareto: drop candidates dominated on accuracy, energy and runtime.
        on_infeasible: ``"raise"`` :class:`NoFeasibleModelError`, or take the
            ``"least_violating"`` candidate and say so in ``Decision.note``.
    """

    def __init__(
        self,
        profile: EnergyProfile | str,
        weights: WeightsLike | None = None,
        normalization: str | Normalizer = "minmax",
        *,
        constraints: Constraints | Mapping[str, Any] | None = None,
        models: Iterable[str] | None = None,
        pareto: bool = False,
        on_infeasible: OnInfeasible = "raise",
    ) -> None:
        self.profile = EnergyProfile.coerce(profile)
        self.weights = Weights.coerce(weights)
        self.normalization, self._normalize = get_normalizer(normalization)
        self._normalize_accuracy = get_accuracy_normalizer(normalization)
        self.constraints = Constraints.coerce(constraints, Constraints())
        names = list(self.profile.models) if models is None else list(models)
        if not names:
            raise ValueError("The scheduler needs at least one model.")
        self._models: dict[str, CompiledModel] = {name: self.profile.model(name).compile(name) for name in names}
        self._learned: dict[str, LearnedSnapshot] = {}
        self.pareto = pareto
        if on_infeasible not in ("raise", "least_violating"):
            raise ValueError(f"on_infeasible={on_infeasible!r}; use 'raise' or 'least_violating'.")
        self.on_infeasible: OnInfeasible = on_infeasible

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(self._models)

    def set_learned(self, model: str, snapshot: LearnedSnapshot | None) -> None:
        """Install (or, with None, remove) the adapted predictions of ``model``.

        The snapshot's coefficients replace the profile's in every later decision; its
        ``None`` fields keep the prior. Replacing one dict entry is atomic, so decisions
        running in other threads see either the old or the new snapshot.

        Raises:
            UnknownModelError: ``model`` is not a candidate.
        """
        if model not in self._models:
            raise UnknownModelError(f"Cannot set learned costs of {model!r}: candidates are {list(self._models)}.")
        if snapshot is None:
            self._learned.pop(model, None)
        else:
            self._learned[model] = snapshot

    def learned(self, model: str) -> LearnedSnapshot | None:
        """The adapted snapshot in use for ``model``, or None (the prior)."""
        return self._learned.get(model)

    def predict_costs(
        self,
        model: str,
        input_tokens: float,
        output_tokens: float,
        in_flight: float | None = None,
        *,
        learned: LearnedSnapshot | Literal["current"] | None = "current",
    ) -> tuple[float, float, tuple[str, ...]]:
        """Runtime (s), energy (J) and flags of ``model`` for *given* token counts, with the
        coefficients a decision would use now (adapted where learned, else the prior), or with
        those of ``learned`` (a snapshot kept from earlier; None = the prior).

        Useful to split a prediction's error: re-predict with the tokens the answer really had.

        Raises:
            UnknownModelError: ``model`` is not a candidate.
        """
        compiled = self._models.get(model)
        if compiled is None:
            raise UnknownModelError(f"Cannot predict for {model!r}: candidates are {list(self._models)}.")
        snap = self._learned.get(model) if learned == "current" else learned
        runtime = snap.runtime if snap is not None else None
        energy = snap.energy if snap is not None else None
        return predict_costs(compiled, input_tokens, output_tokens, in_flight, runtime, energy)

    def decide(
        self,
        input_tokens: int | Mapping[str, int],
        max_output_tokens: int | Mapping[str, int | None] | None = None,
        *,
        weights: WeightsLike | None = None,
        constraints: Constraints | Mapping[str, Any] | None = None,
        task_type: str | None = None,
        exclude: Mapping[str, str] | None = None,
        force: str | None = None,
        in_flight: Mapping[str, float] | None = None,
        prompt_accuracy: Mapping[str, float] | None = None,
        prompt_output_tokens: Mapping[str, float] | None = None,
    ) -> Decision:
        """Choose a model for one request.

        Args:
            input_tokens: prompt tokens, or ``{model: tokens}`` when tokenizers differ.
            max_output_tokens: the request's output cap (caps the predicted output), or
                ``{model: cap or None}`` when each model has its own budget.
            weights: override the default weights for this request.
            constraints: override the default constraints for this request.
            task_type: use per-task accuracy and output length where the profile has them.
            exclude: model -> reason, for candidates the caller rules out (e.g. no tool calling).
            force: choose this model whatever the scores (still predicted and scored).
            in_flight: ``{model: requests in flight}`` counting this request, for the profile's
                load models; models absent from it (or ``None``) get no load adjustment.
            prompt_accuracy: ``{model: expected score in [0, 1]}`` predicted for *this* prompt
                (e.g. by a quality predictor); replaces the profile's accuracy for those models.
            prompt_output_tokens: ``{model: generated tokens}`` predicted for this prompt; replaces
                the length model (still capped by the request's ``max_output_tokens``).

        Raises:
            NoFeasibleModelError: every candidate was excluded (and ``on_infeasible="raise"``).
            UnknownModelError: ``force`` or a key of ``input_tokens`` is not a candidate.
        """
        w = self.weights if weights is None else Weights.coerce(weights)
        limits = self.constraints if constraints is None else Constraints.coerce(constraints, self.constraints)
        caps = max_output_tokens if isinstance(max_output_tokens, Mapping) else None
        one_cap = None if isinstance(max_output_tokens, Mapping) else max_output_tokens
        for value in caps.values() if caps is not None else (one_cap,):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"max_output_tokens={value!r}; give a positive number of tokens or None.")
        counts = input_tokens if isinstance(input_tokens, Mapping) else None
        one_count = 0 if isinstance(input_tokens, Mapping) else input_tokens
        if counts is not None:
            missing = [m for m in self._models if m not in counts]
            if missing:
                raise UnknownModelError(
                    f"input_tokens has no count for {missing}; give one per candidate {list(self._models)}."
                )
        elif isinstance(input_tokens, bool) or not isinstance(input_tokens, int) or input_tokens < 0:
            raise ValueError(f"input_tokens={input_tokens!r}; give a non-negative integer or {{model: tokens}}.")
        if force is not None and force not in self._models:
            raise UnknownModelError(f"Cannot force model {force!r}: candidates are {list(self._models)}.")

        rows: list[_Row] = []
        excluded: dict[str, str] = {}
        excess: dict[str, float] = {}
        unconstrained = limits.max_runtime_s is None and limits.max_energy_j is None and limits.min_accuracy is None
        learned = self._learned
        for m in self._models.values():
            name = m.name
            tin = counts[name] if counts is not None else one_count
            cap = caps.get(name) if caps is not None else one_cap
            load = in_flight.get(name) if in_flight is not None else None
            snap = learned.get(name) if learned else None
            said_tout = prompt_output_tokens.get(name) if prompt_output_tokens else None
            said_accuracy = prompt_accuracy.get(name) if prompt_accuracy else None
            if snap is None and said_tout is None and said_accuracy is None:  # the common case: the profile alone
                tout = predict_output_tokens(
                    m.output_intercept, m.output_slope, m.output_by_task, m.output_cap, tin, cap, task_type
                )
                runtime_s, energy_j, flags = predict_costs(m, tin, tout, load)
                accuracy = m.accuracy_by_task.get(task_type, m.accuracy) if task_type is not None else m.accuracy
                if task_type is None:
                    sources = _PRIOR_SOURCES
                else:
                    sources = _sources(
                        PRIOR,
                        PRIOR,
                        TASK if task_type in m.output_by_task else PRIOR,
                        TASK if task_type in m.accuracy_by_task else PRIOR,
                    )
                observations = _NO_OBSERVATIONS
            else:
                tout, runtime_s, energy_j, accuracy, flags, sources, observations = _predict(
                    m, snap, tin, cap, task_type, load, said_tout, said_accuracy
                )
            rows.append((name, tin, tout, runtime_s, energy_j, accuracy, flags, load, sources, observations))
            if exclude and name in exclude:
                excluded[name] = exclude[name]
                continue
            tokens_needed = tin + (cap if cap is not None else tout)
            if unconstrained and (not limits.fit_context_window or tokens_needed <= m.context_window):
                continue  # the common case: nothing to check
            reasons, size = limits.violations(
                runtime_s=runtime_s,
                energy_j=energy_j,
                accuracy=accuracy,
                tokens_needed=tokens_needed,
                context_window=m.context_window,
            )
            if reasons:
                excluded[name] = "; ".join(reasons)
                excess[name] = size

        note = None
        eligible = [r for r in rows if r[0] not in excluded]
        if not eligible:
            if force is None and (self.on_infeasible == "raise" or not excess):
                detail = "; ".join(f"{m}: {why}" for m, why in excluded.items())
                raise NoFeasibleModelError(
                    f"No candidate satisfies the constraints ({detail}). Relax the constraints, "
                    "lower max_output_tokens, or pass on_infeasible='least_violating'.",
                    excluded,
                )
            if force is None:
                least = min(excess, key=lambda m: (excess[m], m))
                note = f"no feasible candidate; took {least!r}, the least violating ({excluded.pop(least)})"
                eligible = [r for r in rows if r[0] == least]
            else:
                eligible = []
        elif self.pareto and len(eligible) > 1:
            beaten = dominated_by({r[0]: (1.0 - r[5], r[4], r[3]) for r in eligible})
            for loser, winner in beaten.items():
                excluded[loser] = f"dominated by {winner!r} on accuracy, energy and runtime"
            eligible = [r for r in eligible if r[0] not in beaten]

        scored: dict[str, tuple[float, float, float, float]] = {}
        if eligible:
            acc_terms = self._normalize_accuracy([r[5] for r in eligible])
            energy_terms = self._normalize([r[4] for r in eligible])
            time_terms = self._normalize([r[3] for r in eligible])
            for r, a, e, t in zip(eligible, acc_terms, energy_terms, time_terms, strict=True):
                scored[r[0]] = (w.accuracy * a + w.energy * e + w.time * t, a, e, t)

        candidates: dict[str, Candidate] = {}
        for name, tin, tout, runtime_s, energy_j, accuracy, flags, load, sources, observations in rows:
            s = scored.get(name)
            terms: tuple[float | None, float | None, float | None, float | None] = s if s is not None else _UNSCORED
            candidates[name] = Candidate(
                name,
                tin,
                tout,
                runtime_s,
                energy_j,
                accuracy,
                terms[1],
                terms[2],
                terms[3],
                terms[0],
                excluded.get(name) if s is None else None,
                flags,
                load,
                sources,
                observations,
            )
        ranking = tuple(
            sorted(
                scored,
                key=lambda m: (
                    scored[m][0],
                    -candidates[m].accuracy,
                    candidates[m].predicted_energy_j,
                    candidates[m].predicted_runtime_s,
                    m,
                ),
            )
        )
        chosen = force if force is not None else ranking[0]
        if force is not None and force in excluded:
            note = f"forced {force!r} although it is excluded ({excluded[force]})"
        return Decision(
            model=chosen,
            candidates=candidates,
            ranking=ranking,
            weights=w,
            normalization=self.normalization,
            energy_method=self.profile.energy_method,
            max_output_tokens=max_output_tokens,
            task_type=task_type,
            forced=force is not None,
            note=note,
            excluded=excluded,
        )


def _sources(runtime: str, energy: str, output_tokens: str, accuracy: str) -> Mapping[str, str]:
    return _SOURCES[runtime, energy, output_tokens, accuracy]


def _predict(
    m: CompiledModel,
    snap: LearnedSnapshot | None,
    tin: int,
    cap: int | None,
    task_type: str | None,
    load: float | None,
    said_tout: float | None,
    said_accuracy: float | None,
) -> tuple[float, float, float, float, tuple[str, ...], Mapping[str, str], Mapping[str, int]]:
    """Output tokens, runtime, energy, accuracy, flags, sources and observation counts.

    Output length, most specific first: this prompt's prediction, the profile's per-task mean
    (the caller named the task), the learned mean, the profile's line. Accuracy: this prompt's
    prediction, the per-task score, the static score.
    """
    by_task = task_type is not None and task_type in m.output_by_task
    if said_tout is not None:
        tout = predict_output_tokens(said_tout, 0.0, _NO_TASKS, None, tin, cap, None)
        out_source = PROMPT
    elif by_task:
        tout = predict_output_tokens(
            m.output_intercept, m.output_slope, m.output_by_task, m.output_cap, tin, cap, task_type
        )
        out_source = TASK
    elif snap is not None and snap.output_tokens is not None:
        tout = predict_output_tokens(snap.output_tokens, 0.0, _NO_TASKS, m.output_cap, tin, cap, None)
        out_source = ADAPTED
    else:
        tout = predict_output_tokens(m.output_intercept, m.output_slope, _NO_TASKS, m.output_cap, tin, cap, None)
        out_source = PRIOR
    if said_accuracy is not None:
        accuracy, acc_source = said_accuracy, PROMPT
    elif task_type is not None and task_type in m.accuracy_by_task:
        accuracy, acc_source = m.accuracy_by_task[task_type], TASK
    else:
        accuracy, acc_source = m.accuracy, PRIOR
    runtime = snap.runtime if snap is not None else None
    energy = snap.energy if snap is not None else None
    runtime_s, energy_j, flags = predict_costs(m, tin, tout, load, runtime, energy)
    sources = _sources(
        PRIOR if runtime is None else ADAPTED, PRIOR if energy is None else ADAPTED, out_source, acc_source
    )
    if snap is None:
        return tout, runtime_s, energy_j, accuracy, flags, sources, _NO_OBSERVATIONS
    observations = {
        "runtime": snap.n_runtime if runtime is not None else 0,
        "energy": snap.n_energy if energy is not None else 0,
        "output_tokens": snap.n_length if out_source == ADAPTED else 0,
    }
    return tout, runtime_s, energy_j, accuracy, flags, sources, observations
