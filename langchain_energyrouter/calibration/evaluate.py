"""Replay an outcome matrix through routing policies and report the standard router metrics.

``energyrouter evaluate --matrix M.jsonl`` splits the matrix's prompts (seeded), trains
the per-prompt predictors on one part and replays the other part through:

``single:<model>``
    every prompt to one model;
``random:<p>``
    each prompt to the most accurate model with probability ``p``, else to the cheapest
    (expected values, so exact: no sampling noise), ``p`` = 0, 0.1, ..., 1;
``oracle``
    per prompt, the cheapest model among those with the prompt's best score (the cheapest
    that gets it right, else the cheapest): the ceiling no router can pass;
``router:<w>``
    :class:`~langchain_energyrouter.decide.scheduler.Scheduler` decisions with accuracy weight ``w`` and
    energy weight ``1 - w`` (:data:`ROUTER_ACCURACY_WEIGHTS`, 28 values from 0 to 1), fed the
    predictor's per-prompt expected scores and answer lengths (``prompt_accuracy=``, ``prompt_output_tokens=``);
``router_task:<w>``
    the same with per-task mean scores and lengths from the training part (the static,
    per-``task_type`` accuracy the router had before per-prompt prediction), when the main
    predictor is a learned one: the difference is what reading the prompt buys;
``bandit:<w>``
    the online contextual bandit (:class:`~langchain_energyrouter.prompt.bandit.PromptRouting`, no trained
    predictor: its prior is each model's mean training score) feeding the same scheduler at accuracy
    weight ``w`` (every third weight of the sweep), started empty and learning from each replayed prompt's
    outcome (only the chosen model's score is revealed to it).

Metrics (RouteLLM's definitions; "strong" is the model with the best mean score on the replayed
prompts, "weak" the one with the least total energy among the others; when the strong model is
also the cheapest overall the report says so): APGR, CPT(50%), CPT(80%) and the score at half the
strong model's energy of each family of policies, computed by
:func:`~langchain_energyrouter.calibration.curves.curve_metrics` (its module says how).

Energy per (prompt, model) comes from the matrix's ``energy_j`` where every row of that model
has it, else from the profile's prediction for the row's measured token counts (``--profile``);
the report says which, per model. The scheduler's own *predicted* energy (what the router
decides on) comes from ``--profile`` if given, else from a per-model line
``energy_j = a + b * output_tokens`` fitted on the training part.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from langchain_energyrouter.calibration.baselines import Predictor, TaskMeanPredictor, split_prompts
from langchain_energyrouter.calibration.curves import CurveMetrics, curve_metrics
from langchain_energyrouter.calibration.length_report import LengthReport, length_report
from langchain_energyrouter.calibration.outcomes import OutcomeMatrix, OutcomeRow
from langchain_energyrouter.errors import CalibrationError

DEFAULT_TRAIN_FRACTION = 0.5
ROUTER_ACCURACY_WEIGHTS: tuple[float, ...] = (
    0.0,
    *(round(r / (1 + r), 5) for r in (10 ** (k / 5) for k in range(-10, 16))),
    1.0,
)
"""Accuracy weights of the router sweep (energy weight ``1 - w``): the ratio ``w / (1 - w)`` log-spaced from
0.01 to 1000, since normalised energy terms can be many times the accuracy terms (``relative``: a model
costing 6x the cheapest scores 5 on energy but at most 1 on accuracy)."""
RANDOM_SHARES: tuple[float, ...] = tuple(round(i / 10, 1) for i in range(11))
DEFAULT_NORMALIZATION = "relative"
"""Keeps how much better one model is expected to be (``minmax`` makes any difference 0/1 with two models)."""


def _score(row: OutcomeRow) -> float:
    """A replayed row's score (the replay keeps only scored rows: :meth:`OutcomeMatrix.scored`)."""
    if row.score is None:
        raise CalibrationError(f"Outcome row {row.prompt_id!r}/{row.model!r} has no score; the replay needs one.")
    return row.score


# -- results ----------------------------------------------------------------------------
@dataclass(frozen=True)
class PolicyResult:
    """One policy's replay: mean score and total energy over the replayed prompts."""

    name: str
    family: str
    score: float
    energy_j: float
    strong_share: float
    """Share of calls that went to the most accurate model."""
    calls: dict[str, float] = field(default_factory=dict)
    """Model -> share of calls."""
    parameter: float | None = None
    """The accuracy weight (router), the strong share (random), else None."""


@dataclass
class EvaluationReport:
    """Everything ``energyrouter evaluate`` prints."""

    source: str
    models: tuple[str, ...]
    weak: str
    strong: str
    n_train: int
    n_test: int
    seed: int
    train_fraction: float
    policies: dict[str, PolicyResult]
    metrics: dict[str, CurveMetrics]
    """Family (``router``, ``router_task``, ``oracle``, ``random``, ``bandit``) -> metrics."""
    energy_source: dict[str, str]
    """Model -> ``matrix`` or ``profile`` (where the replayed joules come from)."""
    predicted_energy_source: str
    predictor: str
    normalization: str
    incomplete_prompts: int
    missing_report: str
    notes: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    lengths: LengthReport | None = None
    """The router's predictor's answer lengths on the replayed prompts, next to the baselines."""

    def as_dict(self) -> dict[str, Any]:
        """The ``--json`` document: ``router`` metrics first, then ``policies``, then the rest."""
        router = self.metrics.get("router")
        return {
            "router": router.as_dict() if router is not None else None,
            "policies": {
                name: {
                    "score": p.score,
                    "energy_j": p.energy_j,
                    "strong_share": p.strong_share,
                    "family": p.family,
                    "parameter": p.parameter,
                    "calls": p.calls,
                }
                for name, p in self.policies.items()
            },
            "metrics": {family: m.as_dict() for family, m in self.metrics.items()},
            "weak_model": self.weak,
            "strong_model": self.strong,
            "models": list(self.models),
            "split": {
                "train_prompts": self.n_train,
                "test_prompts": self.n_test,
                "train_fraction": self.train_fraction,
                "seed": self.seed,
            },
            "incomplete_prompts": self.incomplete_prompts,
            "energy_source": self.energy_source,
            "predicted_energy_source": self.predicted_energy_source,
            "predictor": self.predictor,
            "normalization": self.normalization,
            "source": self.source,
            "notes": self.notes,
            "timings_s": self.timings_s,
            **(self.lengths.as_dict() if self.lengths is not None else {}),
        }


# -- the replay -----------------------------------------------------------------------------
def _line_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares ``y = a + b x`` with ``a, b >= 0`` (a through-origin or flat fit when one is negative)."""
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sxx if sxx > 0 else 0.0
    intercept = mean_y - slope * mean_x
    if slope < 0:
        return max(mean_y, 0.0), 0.0
    if intercept < 0:
        sx2 = sum(x * x for x in xs)
        return 0.0, (sum(x * y for x, y in zip(xs, ys, strict=True)) / sx2 if sx2 > 0 else 0.0)
    return intercept, slope


def profile_from_matrix(matrix: OutcomeMatrix, train_rows: Sequence[OutcomeRow]) -> Any:
    """An :class:`~langchain_energyrouter.profile.EnergyProfile` whose cost models are fitted on ``train_rows``.

    Energy and runtime are lines in the generated tokens (``a + b * output_tokens``, both >= 0);
    accuracy is each model's mean training score (the per-prompt predictions replace it).

    Raises:
        CalibrationError: a model's training rows carry no energy (give ``--profile``).
    """
    from langchain_energyrouter.profile import CostModel, DeviceInfo, EnergyProfile, ModelProfile

    by_model: dict[str, list[OutcomeRow]] = {}
    for row in train_rows:
        by_model.setdefault(row.model, []).append(row)
    models = {}
    methods: set[str] = set()
    for name in matrix.models:
        rows = by_model.get(name, [])
        measured = [r for r in rows if r.energy_j is not None]
        if not measured:
            raise CalibrationError(
                f"Outcome matrix {matrix.source} has no energy_j for model {name!r} in the training prompts, so "
                "the router has nothing to predict energy from; pass --profile P.json with that model."
            )
        methods.update(r.energy_method for r in measured if r.energy_method)
        outs = [float(r.output_tokens) for r in measured]
        e0, e1 = _line_fit(outs, [float(r.energy_j or 0.0) for r in measured])
        timed = [r for r in rows if r.runtime_s is not None]
        t0, t1 = (
            _line_fit([float(r.output_tokens) for r in timed], [float(r.runtime_s or 0.0) for r in timed])
            if timed
            else (0.0, 0.0)
        )
        models[name] = ModelProfile(
            runtime=CostModel(intercept=t0, input_tokens=0.0, output_tokens=t1, uses_interaction=False),
            energy=CostModel(intercept=e0, input_tokens=0.0, output_tokens=e1, uses_interaction=False),
            accuracy=sum(_score(r) for r in rows) / len(rows),
            context_window=1_000_000,
        )
    method = methods.pop() if len(methods) == 1 else "estimate"
    return EnergyProfile(
        schema_version=2,
        device=DeviceInfo(name=f"fitted from {matrix.source}"),
        energy_method=method,  # type: ignore[arg-type]
        created_at=datetime.now(timezone.utc),
        description="per-model energy and runtime lines in output tokens, fitted on an outcome matrix's training part",
        models=models,
    )


def _energy_table(
    matrix: OutcomeMatrix, prompt_ids: Sequence[str], profile: Any | None
) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """Prompt -> model -> joules of the replayed prompts, and model -> where the joules come from."""
    source: dict[str, str] = {}
    for model in matrix.models:
        complete = all(matrix.by_prompt(p)[model].energy_j is not None for p in prompt_ids)
        if complete:
            source[model] = "matrix"
        elif profile is not None and model in profile.models:
            source[model] = "profile"
        else:
            raise CalibrationError(
                f"Outcome matrix {matrix.source}: model {model!r} lacks energy_j on some replayed prompts and "
                + ("the profile has no entry for it" if profile is not None else "no --profile was given")
                + "; pass --profile P.json with that model to predict its joules from the measured token counts."
            )

    def joules(row: OutcomeRow) -> float:
        if source[row.model] == "matrix" and row.energy_j is not None:
            return row.energy_j
        assert profile is not None  # a model without joules has source "profile" only when there is one
        return float(profile.models[row.model].predict(row.input_tokens, row.output_tokens).energy_j)

    table: dict[str, dict[str, float]] = {}
    for prompt_id in prompt_ids:
        rows = matrix.by_prompt(prompt_id)
        table[prompt_id] = {m: joules(rows[m]) for m in matrix.models}
    return table, source


def _summarise(
    name: str,
    family: str,
    choices: Mapping[str, str],
    matrix: OutcomeMatrix,
    energy: Mapping[str, Mapping[str, float]],
    strong: str,
    parameter: float | None = None,
) -> PolicyResult:
    n = len(choices)
    score = sum(_score(matrix.by_prompt(p)[m]) for p, m in choices.items()) / n
    joules = sum(energy[p][m] for p, m in choices.items())
    counts: dict[str, int] = {}
    for m in choices.values():
        counts[m] = counts.get(m, 0) + 1
    shares = {m: c / n for m, c in sorted(counts.items())}
    return PolicyResult(name, family, score, joules, shares.get(strong, 0.0), shares, parameter)


def _route(
    scheduler: Any,
    predictor: Predictor,
    matrix: OutcomeMatrix,
    test: Sequence[str],
    weights: Sequence[float],
) -> dict[float, dict[str, str]]:
    """Accuracy weight -> prompt -> the model the scheduler chooses with ``predictor``'s figures."""
    from langchain_energyrouter.decide.scoring import Weights

    first = matrix.models[0]
    plans: dict[float, dict[str, str]] = {w: {} for w in weights}
    ws = {w: Weights(accuracy=w, energy=1.0 - w) for w in weights}
    for prompt_id in test:
        rows = matrix.by_prompt(prompt_id)
        row = rows[first]
        accuracy, lengths = predictor.predict(row.prompt, row.input_tokens, row.task_type)
        accuracy = {m: min(max(float(v), 0.0), 1.0) for m, v in accuracy.items() if m in rows}
        lengths = {m: v for m, v in lengths.items() if m in rows}  # distributions or plain token counts
        tokens = {m: r.input_tokens for m, r in rows.items()}
        for w in weights:
            decision = scheduler.decide(tokens, weights=ws[w], prompt_accuracy=accuracy, prompt_output_tokens=lengths)
            plans[w][prompt_id] = decision.model
    return plans


def _run_bandit(
    scheduler: Any,
    routing: Any,
    matrix: OutcomeMatrix,
    test: Sequence[str],
    weight: float,
    budget: int | None,
) -> dict[str, str]:
    """Prompt -> the model chosen with the bandit's estimates; after each, it learns the chosen model's outcome.

    ``routing`` is a :class:`~langchain_energyrouter.prompt.bandit.PromptRouting`: ``predict`` before the
    decision, ``remember`` it, then ``feedback`` (the score) and ``observe_length`` (the answer's
    tokens; ``capped`` when it reached ``budget``), as a router's feedback would.
    """
    from langchain_energyrouter.decide.scoring import Weights

    first = matrix.models[0]
    w = Weights(accuracy=weight, energy=1.0 - weight)
    choices: dict[str, str] = {}
    for prompt_id in test:
        rows = matrix.by_prompt(prompt_id)
        row = rows[first]
        estimate = routing.predict(row.prompt, row.input_tokens, row.task_type)
        tokens = {m: r.input_tokens for m, r in rows.items()}
        model = scheduler.decide(
            tokens, weights=w, prompt_accuracy=estimate.accuracy, prompt_output_tokens=estimate.output_tokens
        ).model
        routing.remember(prompt_id, model, estimate)
        chosen = rows[model]
        routing.feedback(prompt_id, chosen.score)
        routing.observe_length(
            prompt_id, chosen.output_tokens, capped=budget is not None and chosen.output_tokens >= budget
        )
        choices[prompt_id] = model
    return choices


def _bandit_weights() -> tuple[float, ...]:
    return (*ROUTER_ACCURACY_WEIGHTS[1::3], 1.0)


def evaluate(
    matrix: OutcomeMatrix,
    *,
    train_fraction: float = DEFAULT_TRAIN_FRACTION,
    seed: int = 0,
    profile: Any | None = None,
    predictor_factory: Callable[[Sequence[OutcomeRow]], Predictor] | None = None,
    predictor_name: str | None = None,
    bandit_options: Any | None = None,
    normalization: str = DEFAULT_NORMALIZATION,
    router_weights: Sequence[float] = ROUTER_ACCURACY_WEIGHTS,
    task_baseline: bool = True,
) -> EvaluationReport:
    """Split, train, replay every policy and compute the metrics (see the module docstring).

    Args:
        matrix: the outcome matrix; prompts lacking some model's row are left out (and counted).
        train_fraction: share of the complete prompts the predictors are trained on.
        seed: the split's seed.
        profile: an :class:`~langchain_energyrouter.profile.EnergyProfile` for the router's energy
            predictions and for joules the matrix lacks (None: fitted on the training part).
        predictor_factory: training rows -> an object with ``predict(prompt, input_tokens, task_type)``
            (None: :class:`TaskMeanPredictor`).
        predictor_name: how the report names the predictor.
        bandit_options: :class:`~langchain_energyrouter.prompt.bandit.BanditOptions` to replay the online
            bandit with (None: no bandit policy).
        normalization: the scheduler's normaliser (``relative`` keeps magnitudes; see the notes).
        router_weights: the accuracy weights of the router sweep (energy weight ``1 - w``).
        task_baseline: also replay the router with :class:`TaskMeanPredictor` (``router_task``) when a
            ``predictor_factory`` is given.

    Raises:
        CalibrationError: fewer than two models, too few complete prompts, missing energy.
    """
    from langchain_energyrouter.decide.scheduler import Scheduler

    timings: dict[str, float] = {}
    notes: list[str] = []
    if len(matrix.models) < 2:
        raise CalibrationError(
            f"Outcome matrix {matrix.source} has rows for {list(matrix.models)} only; routing needs two models or more."
        )
    if matrix.length_only:
        raise CalibrationError(
            f"Outcome matrix {matrix.source} has no scores (length-only rows): there is no quality to replay; "
            "`energyrouter evaluate` reports lengths alone for such a matrix (evaluate_lengths)."
        )
    if any(r.score is None for r in matrix.rows):
        unscored = sum(r.score is None for r in matrix.rows)
        notes.append(
            f"{unscored} length-only rows (no score) are left out of the replay and of the length report (both train "
            "and judge on the scored rows); evaluate them apart as a length-only matrix"
        )
        matrix = matrix.scored()
    complete = matrix.complete_prompt_ids()
    train, test = split_prompts(complete, train_fraction, seed)
    train_rows = [r for p in train for r in matrix.by_prompt(p).values()]
    energy, energy_source = _energy_table(matrix, test, profile)
    if any(s == "profile" for s in energy_source.values()):
        notes.append(
            "replayed joules of "
            + ", ".join(m for m, s in energy_source.items() if s == "profile")
            + " are the profile's predictions for the measured token counts (the matrix has no energy_j for them)"
        )

    models = matrix.models
    mean_score = {m: sum(_score(matrix.by_prompt(p)[m]) for p in test) / len(test) for m in models}
    total_energy = {m: sum(energy[p][m] for p in test) for m in models}
    strong = max(models, key=lambda m: (mean_score[m], -total_energy[m]))
    weak = min((m for m in models if m != strong), key=lambda m: (total_energy[m], -mean_score[m]))
    cheapest = min(models, key=lambda m: (total_energy[m], -mean_score[m]))
    if cheapest == strong:
        notes.append(
            f"{strong} is both the most accurate and the cheapest model in total energy on the replayed prompts "
            f"({total_energy[strong]:.1f} J against {weak}'s {total_energy[weak]:.1f} J); the weak end is the "
            f"cheapest of the others, {weak}; savings can only come prompt by prompt"
        )

    policies: dict[str, PolicyResult] = {}
    for m in models:
        policies[f"single:{m}"] = _summarise(f"single:{m}", "single", {p: m for p in test}, matrix, energy, strong)
    for share in RANDOM_SHARES:
        name = f"random:{share:.1f}"
        w_, s_ = policies[f"single:{weak}"], policies[f"single:{strong}"]
        policies[name] = PolicyResult(
            name,
            "random",
            (1 - share) * w_.score + share * s_.score,
            (1 - share) * w_.energy_j + share * s_.energy_j,
            share,
            {weak: 1 - share, strong: share},
            share,
        )
    oracle: dict[str, str] = {}
    for p in test:
        rows = matrix.by_prompt(p)
        best = max(_score(r) for r in rows.values())
        oracle[p] = min((m for m in models if _score(rows[m]) >= best), key=lambda m: (energy[p][m], m))
    policies["oracle"] = _summarise("oracle", "oracle", oracle, matrix, energy, strong)

    started = time.perf_counter()
    sched_profile = profile if profile is not None else profile_from_matrix(matrix, train_rows)
    missing = [m for m in models if m not in sched_profile.models]
    if missing:
        raise CalibrationError(f"The profile has no entry for {missing}; it must cover every model of the matrix.")
    scheduler = Scheduler(sched_profile, normalization=normalization, models=list(models))
    predicted_source = "profile" if profile is not None else "fitted on the training part (energy ~ output tokens)"
    families: list[tuple[str, Predictor]] = []
    if predictor_factory is not None:
        families.append(("router", predictor_factory(train_rows)))
        timings["train_s"] = time.perf_counter() - started
        if task_baseline:
            families.append(("router_task", TaskMeanPredictor.train(train_rows)))
    else:
        families.append(("router", TaskMeanPredictor.train(train_rows)))
        timings["train_s"] = time.perf_counter() - started
        predictor_name = predictor_name or "task-mean"
    started = time.perf_counter()
    for family, predictor in families:
        plans = _route(scheduler, predictor, matrix, test, router_weights)
        for w, plan in plans.items():
            name = f"{family}:{w:.4g}"
            policies[name] = _summarise(name, family, plan, matrix, energy, strong, w)
    timings["route_s"] = time.perf_counter() - started
    test_ids = set(test)
    lengths = length_report(
        families[0][1],
        train_rows,
        [r for r in matrix.rows if r.prompt_id in test_ids],
        predictor_name=predictor_name or "learned",
    )

    if bandit_options is not None:
        from langchain_energyrouter.prompt.routing import PromptRouting

        started = time.perf_counter()
        prior = TaskMeanPredictor.train(train_rows)._overall
        budget = max(r.output_tokens for r in matrix.rows)
        capped = sum(r.output_tokens >= budget for r in matrix.rows) > 1  # several answers at the longest: a budget
        for w in _bandit_weights():
            routing = PromptRouting(
                models,
                prior_accuracy={m: v[0] for m, v in prior.items()},
                prior_output_tokens={m: v[1] for m, v in prior.items()},
                options=bandit_options,
            )
            plan = _run_bandit(scheduler, routing, matrix, test, w, budget if capped else None)
            name = f"bandit:{w:.4g}"
            policies[name] = _summarise(name, "bandit", plan, matrix, energy, strong, w)
        timings["bandit_s"] = time.perf_counter() - started

    def triple(p: PolicyResult) -> tuple[float, float, float]:
        return (p.strong_share, p.score, p.energy_j)

    anchor_weak, anchor_strong = triple(policies[f"single:{weak}"]), triple(policies[f"single:{strong}"])
    anchor_weak = (0.0, anchor_weak[1], anchor_weak[2])
    metrics: dict[str, CurveMetrics] = {}
    for family in ("router", "router_task", "oracle", "random", "bandit"):
        points = [triple(p) for p in policies.values() if p.family == family]
        if points:
            metrics[family] = curve_metrics(points, anchor_weak, anchor_strong)
    oracle_share = policies["oracle"].energy_j / max(policies[f"single:{strong}"].energy_j, 1e-12)
    if oracle_share > 0.5:
        notes.append(
            f"even the oracle needs {oracle_share:.0%} of {strong}'s energy on these prompts, so no policy reaches "
            "half of it (score at half energy: none)"
        )
    return EvaluationReport(
        source=matrix.source,
        models=models,
        weak=weak,
        strong=strong,
        n_train=len(train),
        n_test=len(test),
        seed=seed,
        train_fraction=train_fraction,
        policies=policies,
        metrics=metrics,
        energy_source=energy_source,
        predicted_energy_source=predicted_source,
        predictor=str(predictor_name or getattr(predictor_factory, "__name__", "custom")),
        normalization=normalization,
        incomplete_prompts=len(matrix.incomplete),
        missing_report=matrix.missing_report(),
        notes=notes,
        timings_s=timings,
        lengths=lengths,
    )
