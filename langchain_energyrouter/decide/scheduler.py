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
  coefficients replace the prior's and whose length residual shifts the prior's length
  (the dependence on the input stays). Each candidate says where its predictions came
  from (``sources``) and from how many observations.

An answer's length is a distribution (:class:`~langchain_energyrouter.cost.LengthDistribution`):
predicted runtime and energy are those of its mean under the request's cap (the mean of
``min(tokens, cap)``, what joules add up to over many calls), and ``max_runtime_s`` /
``max_energy_j`` must hold at an upper quantile of the length (``constraint_quantile``,
0.9 by default), so a constraint is not met only on average. Each candidate records the
median, the mean and that quantile.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from statistics import NormalDist
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

from langchain_energyrouter.cost import (
    CompiledModel,
    LengthDistribution,
    predict_costs,
)
from langchain_energyrouter.decide.exploration import Explorer
from langchain_energyrouter.decide.predictions import (
    NO_OBSERVATIONS,
    PRIOR,
    PRIOR_SOURCES,
    LearnedSnapshot,
    Prediction,
    predict_candidate,
)
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

_UNSCORED: tuple[float | None, float | None, float | None, float | None] = (None, None, None, None)

DEFAULT_CONSTRAINT_QUANTILE = 0.9
"""The quantile of the answer's length at which ``max_runtime_s`` / ``max_energy_j`` must hold."""


class Candidate(NamedTuple):
    """One model's predictions and cost for one request (a NamedTuple: cheap to build).

    ``cost`` is the weighted sum of the normalised terms: **lower is better** (the chosen model has the
    lowest). It was called ``score`` up to 0.1; ``score`` still reads it, with a DeprecationWarning, until
    the next release. Feedback scores, outcome matrices and the demo's "score" column are a different
    figure, where higher is better (the share of answers graded right).
    """

    model: str
    input_tokens: int
    predicted_output_tokens: float
    """The mean of the answer's length under the cap (``min(tokens, cap)``): what costs add up to."""
    predicted_runtime_s: float
    """Runtime of that mean length (costs are linear in tokens: the expected runtime)."""
    predicted_energy_j: float
    accuracy: float
    accuracy_term: float | None = None
    """Normalised accuracy cost (``1 - accuracy``); None when excluded."""
    energy_term: float | None = None
    time_term: float | None = None
    cost: float | None = None
    """Weighted sum of the terms; lower is better; None when excluded."""
    excluded: str | None = None
    """Why the candidate was not eligible, or None."""
    flags: tuple[str, ...] = ()
    """E.g. ``runtime_clamped`` when a prediction was negative and clamped to 0, ``extrapolated``
    outside the fit's token ranges, ``load_extrapolated`` beyond the measured load."""
    in_flight: float | None = None
    """Requests in flight on this model when deciding, this one included (None: not known)."""
    sources: Mapping[str, str] = PRIOR_SOURCES
    """Where each prediction came from: ``{"runtime"|"energy"|"output_tokens"|"accuracy":
    "prior"|"adapted"|"task"|"prompt"}``."""
    observations: Mapping[str, int] = NO_OBSERVATIONS
    """Observations behind each adapted prediction (0 for the prior)."""
    output_tokens_median: float | None = None
    """The median answer length (under the cap)."""
    output_tokens_upper: float | None = None
    """The answer length at the decision's ``constraint_quantile`` (under the cap)."""
    predicted_runtime_s_upper: float | None = None
    """Runtime at that length: what ``max_runtime_s`` is checked against."""
    predicted_energy_j_upper: float | None = None
    """Energy at that length: what ``max_energy_j`` is checked against."""
    output_length: LengthDistribution | None = None
    """The length distribution behind these figures (``log1p(tokens)`` mean and spread)."""

    @property
    def score(self) -> float | None:
        """Deprecated name of :attr:`cost` (lower is better); removed in the next release."""
        warnings.warn(
            "Candidate.score is deprecated: it is the decision's cost (lower is better); read Candidate.cost",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.cost

    def as_dict(self) -> dict[str, Any]:
        out = self._asdict()
        del out["model"]
        out["flags"] = list(self.flags)
        out["sources"] = dict(self.sources)
        out["observations"] = dict(self.observations)
        out["output_length"] = self.output_length._asdict() if self.output_length is not None else None
        out["score"] = self.cost  # deprecated alias of "cost" (lower is better), dropped in the next release
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
    constraint_quantile: float = DEFAULT_CONSTRAINT_QUANTILE
    """The length quantile of the candidates' ``*_upper`` figures, which the constraints were checked at."""
    explored: Mapping[str, Any] | None = None
    """Set when exploration chose another candidate than the best-scored one: ``{"from": the greedy choice,
    "expected_extra_energy_j": the chosen one's predicted joules minus its}`` (see
    :mod:`~langchain_energyrouter.decide.exploration`)."""

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
            "predicted_output_tokens_median": chosen.output_tokens_median,
            "predicted_output_tokens_upper": chosen.output_tokens_upper,
            "constraint_quantile": self.constraint_quantile,
            "predicted_runtime_s": chosen.predicted_runtime_s,
            "predicted_energy_j": chosen.predicted_energy_j,
            "ranking": list(self.ranking),
            "excluded": dict(self.excluded),
            "note": self.note,
            "explored": dict(self.explored) if self.explored is not None else None,
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
        constraint_quantile: the quantile of the answer's length at which ``max_runtime_s`` and
            ``max_energy_j`` must hold, in (0, 1) (0.5: the median; 0.9 by default).
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
        constraint_quantile: float = DEFAULT_CONSTRAINT_QUANTILE,
    ) -> None:
        if isinstance(constraint_quantile, bool) or not 0.0 < constraint_quantile < 1.0:
            raise ValueError(
                f"constraint_quantile={constraint_quantile!r}; give a number in (0, 1), e.g. 0.9 (0.5: the median)."
            )
        self.constraint_quantile = float(constraint_quantile)
        self._upper_z = NormalDist().inv_cdf(self.constraint_quantile)
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
        prompt_output_tokens: Mapping[str, LengthDistribution | float] | None = None,
        prompt_length_observations: Mapping[str, int] | None = None,
        explorer: Explorer | None = None,
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
            prompt_output_tokens: ``{model: length}`` predicted for this prompt, a
                :class:`~langchain_energyrouter.cost.LengthDistribution` (or a number of tokens: a point
                prediction); replaces the profile's length (still capped by ``max_output_tokens``).
            prompt_length_observations: ``{model: answers}`` behind those length predictions (what
                exploration's uncertainty shrinks with); absent models count 0.
            explorer: explore where predictions are uncertain (:mod:`~langchain_energyrouter.decide.exploration`);
                never for a forced route.

        Raises:
            NoFeasibleModelError: every candidate was excluded (and ``on_infeasible="raise"``).
            UnknownModelError: ``force`` or a key of ``input_tokens`` is not a candidate.
            ValueError: a count, cap or prompt length is not a finite non-negative number (or a distribution
                with finite ``mu`` and ``sigma >= 0``).
        """
        if prompt_output_tokens:
            _check_lengths(prompt_output_tokens)
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

        rows: list[Prediction] = []
        excluded: dict[str, str] = {}
        excess: dict[str, float] = {}
        unconstrained = limits.max_runtime_s is None and limits.max_energy_j is None and limits.min_accuracy is None
        learned = self._learned
        z = self._upper_z
        for m in self._models.values():
            name = m.name
            tin = counts[name] if counts is not None else one_count
            cap = caps.get(name) if caps is not None else one_cap
            load = in_flight.get(name) if in_flight is not None else None
            snap = learned.get(name) if learned else None
            said_tout = prompt_output_tokens.get(name) if prompt_output_tokens else None
            said_accuracy = prompt_accuracy.get(name) if prompt_accuracy else None
            said_n = prompt_length_observations.get(name, 0) if prompt_length_observations else 0
            row = predict_candidate(m, snap, tin, cap, task_type, load, said_tout, said_accuracy, z, said_n)
            rows.append(row)
            if exclude and name in exclude:
                excluded[name] = exclude[name]
                continue
            tokens_needed = tin + (cap if cap is not None else row.upper)
            if unconstrained and (not limits.fit_context_window or tokens_needed <= m.context_window):
                continue  # the common case: nothing to check
            reasons, size = limits.violations(
                runtime_s=row.runtime_upper,
                energy_j=row.energy_upper,
                accuracy=row.accuracy,
                tokens_needed=tokens_needed,
                context_window=m.context_window,
            )
            if reasons:
                excluded[name] = "; ".join(reasons)
                excess[name] = size

        note = None
        eligible = [r for r in rows if r.name not in excluded]
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
                eligible = [r for r in rows if r.name == least]
            else:
                eligible = []
        elif self.pareto and len(eligible) > 1:
            beaten = dominated_by({r.name: (1.0 - r.accuracy, r.energy_j, r.runtime_s) for r in eligible})
            for loser, winner in beaten.items():
                excluded[loser] = f"dominated by {winner!r} on accuracy, energy and runtime"
            eligible = [r for r in eligible if r.name not in beaten]

        scored: dict[str, tuple[float, float, float, float]] = {}
        if eligible:
            acc_terms = self._normalize_accuracy([r.accuracy for r in eligible])
            energy_terms = self._normalize([r.energy_j for r in eligible])
            time_terms = self._normalize([r.runtime_s for r in eligible])
            for r, a, e, t in zip(eligible, acc_terms, energy_terms, time_terms, strict=True):
                scored[r.name] = (w.accuracy * a + w.energy * e + w.time * t, a, e, t)

        candidates: dict[str, Candidate] = {}
        for r in rows:
            s = scored.get(r.name)
            terms: tuple[float | None, float | None, float | None, float | None] = s if s is not None else _UNSCORED
            candidates[r.name] = Candidate(
                r.name,
                r.tin,
                r.tout,
                r.runtime_s,
                r.energy_j,
                r.accuracy,
                terms[1],
                terms[2],
                terms[3],
                terms[0],
                excluded.get(r.name) if s is None else None,
                r.flags,
                r.load,
                r.sources,
                r.observations,
                r.median,
                r.upper,
                r.runtime_upper,
                r.energy_upper,
                r.length,
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
        explored = None
        if explorer is not None and force is None and len(ranking) > 1:
            greedy = candidates[ranking[0]]
            unfinished = [
                r.name
                for r in eligible
                if r.name != greedy.model
                and explorer.unfinished(r.name)
                and PRIOR in (r.sources["runtime"], r.sources["energy"])
            ]
            drawn = min(unfinished, key=lambda m: scored[m][0]) if unfinished else self._draw(explorer, eligible, w)
            other = candidates[drawn] if drawn != greedy.model else None
            if explorer.admit(
                greedy.predicted_energy_j, other.predicted_energy_j if other is not None else None, drawn
            ):
                assert other is not None
                extra = max(other.predicted_energy_j - greedy.predicted_energy_j, 0.0)
                explored = MappingProxyType({"from": greedy.model, "expected_extra_energy_j": extra})
                ranking = (drawn, *(name for name in ranking if name != drawn))
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
            constraint_quantile=self.constraint_quantile,
            explored=explored,
        )

    def _draw(self, explorer: Explorer, eligible: list[Prediction], w: Weights) -> str:
        """The winner of one plausible draw of the eligible candidates' lengths and costs (Thompson sampling)."""
        runtimes: list[float] = []
        energies: list[float] = []
        for r in eligible:
            n = r.observations
            length = r.length._replace(mu=r.length.mu + explorer.log_noise(n["output_tokens"]))
            tout = max(length.mean_tokens(r.limit), 1.0)
            runtime_s, energy_j, _ = predict_costs(self._models[r.name], r.tin, tout, r.load, *r.coefficients)
            runtimes.append(runtime_s * math.exp(explorer.log_noise(n["runtime"])))
            energies.append(energy_j * math.exp(explorer.log_noise(n["energy"])))
        acc_terms = self._normalize_accuracy([r.accuracy for r in eligible])
        scores = [
            (w.accuracy * a + w.energy * e + w.time * t, -r.accuracy, energy, runtime, r.name)
            for r, a, e, t, energy, runtime in zip(
                eligible, acc_terms, self._normalize(energies), self._normalize(runtimes), energies, runtimes,
                strict=True,
            )
        ]  # fmt: skip
        return min(scores)[-1]


def _check_lengths(lengths: Mapping[str, LengthDistribution | float]) -> None:
    """Refuse a prompt length that would turn into NaN or negative costs (a predictor bug, said by name)."""
    for name, value in lengths.items():
        if isinstance(value, LengthDistribution):
            if not (math.isfinite(value.mu) and math.isfinite(value.mean_shift)) or not (
                math.isfinite(value.sigma) and value.sigma >= 0.0
            ):
                raise ValueError(
                    f"prompt_output_tokens[{name!r}]={value!r}; a LengthDistribution needs finite mu and mean_shift "
                    "and a finite sigma >= 0 (check the predictor that produced it)."
                )
        elif (
            isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value >= 0)
        ):
            raise ValueError(
                f"prompt_output_tokens[{name!r}]={value!r}; give a finite number of tokens >= 0 "
                "or a LengthDistribution."
            )
