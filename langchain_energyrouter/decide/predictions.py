"""One candidate's predictions for one request, before scoring: answer length, runtime, energy, accuracy,
where each came from and how many observations back it (hot path: stdlib only)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

from langchain_energyrouter.cost import Coefficients, CompiledModel, LengthDistribution, predict_costs, prior_length

__all__ = [
    "ADAPTED",
    "NO_OBSERVATIONS",
    "PRIOR",
    "PRIOR_SOURCES",
    "PROMPT",
    "TASK",
    "LearnedSnapshot",
    "Prediction",
    "predict_candidate",
]

PRIOR = "prior"
ADAPTED = "adapted"
TASK = "task"
PROMPT = "prompt"
"""Values of :attr:`Candidate.sources`: the profile, the learned state, the profile's per-task
figures, a prediction for this prompt."""

PRIOR_SOURCES: Mapping[str, str] = MappingProxyType(
    {"runtime": PRIOR, "energy": PRIOR, "output_tokens": PRIOR, "accuracy": PRIOR}
)

NO_OBSERVATIONS: Mapping[str, int] = MappingProxyType({"runtime": 0, "energy": 0, "output_tokens": 0})
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


class Prediction(NamedTuple):
    """One candidate's predictions before scoring (see :class:`Candidate` for the fields)."""

    name: str
    tin: int
    tout: float
    runtime_s: float
    energy_j: float
    accuracy: float
    flags: tuple[str, ...]
    load: Any
    sources: Mapping[str, str]
    observations: Mapping[str, int]
    median: float
    upper: float
    runtime_upper: float
    energy_upper: float
    length: LengthDistribution
    limit: int | None
    """The cap the length figures are under (the request's, else the deployment's)."""
    coefficients: tuple[Coefficients | None, Coefficients | None]
    """The learned runtime and energy coefficients in force (None: the prior's)."""


class LearnedSnapshot(Protocol):
    """What the scheduler reads of a learned (adapted) model; ``None`` fields fall back to the prior."""

    @property
    def runtime(self) -> Coefficients | None: ...
    @property
    def energy(self) -> Coefficients | None: ...
    @property
    def output_log_shift(self) -> float | None:
        """Learned residual of ``log1p(tokens)`` over the prior's length (None: none learned)."""
        ...

    @property
    def output_log_sigma(self) -> float | None:
        """Learned spread of that residual (None: keep the prior's)."""
        ...

    @property
    def n_runtime(self) -> int: ...
    @property
    def n_energy(self) -> int: ...
    @property
    def n_length(self) -> int: ...


def _sources(runtime: str, energy: str, output_tokens: str, accuracy: str) -> Mapping[str, str]:
    return _SOURCES[runtime, energy, output_tokens, accuracy]


def predict_candidate(
    m: CompiledModel,
    snap: LearnedSnapshot | None,
    tin: int,
    cap: int | None,
    task_type: str | None,
    load: float | None,
    said_tout: LengthDistribution | float | None,
    said_accuracy: float | None,
    z: float,
    said_n: int = 0,
) -> Prediction:
    """One candidate's length distribution, costs, accuracy, flags, sources and observation counts.

    Length, most specific first: this prompt's prediction (``said_n`` answers behind it), the profile's
    per-task mean (the caller named the task), the profile's line shifted by the learned residual, the line.
    The figures are under the cap: the request's, else the deployment's (the profile's ``max_output_tokens``).
    Accuracy: this prompt's prediction, the per-task score, the static score.
    """
    if said_tout is not None:
        length = (
            said_tout if isinstance(said_tout, LengthDistribution) else LengthDistribution.from_mean(said_tout, 0.0)
        )
        out_source = PROMPT
    elif task_type is not None and task_type in m.output_by_task:
        length, out_source = prior_length(m, tin, task_type), TASK
    elif snap is not None and snap.output_log_shift is not None:
        length, out_source = prior_length(m, tin).shifted(snap.output_log_shift, snap.output_log_sigma), ADAPTED
    else:
        length, out_source = prior_length(m, tin), PRIOR
    limit = cap if m.output_cap is None or (cap is not None and cap < m.output_cap) else m.output_cap
    tout = max(length.mean_tokens(limit), 1.0)
    median = max(length.quantile_tokens(0.0, limit), 1.0)
    upper = max(length.quantile_tokens(z, limit), 1.0)
    if said_accuracy is not None:
        accuracy, acc_source = said_accuracy, PROMPT
    elif task_type is not None and task_type in m.accuracy_by_task:
        accuracy, acc_source = m.accuracy_by_task[task_type], TASK
    else:
        accuracy, acc_source = m.accuracy, PRIOR
    runtime = snap.runtime if snap is not None else None
    energy = snap.energy if snap is not None else None
    runtime_s, energy_j, flags = predict_costs(m, tin, tout, load, runtime, energy)
    runtime_upper, energy_upper, _ = predict_costs(m, tin, upper, load, runtime, energy)
    n_length = said_n if out_source == PROMPT else 0
    if snap is None:
        sources = _sources(PRIOR, PRIOR, out_source, acc_source)
        observations = NO_OBSERVATIONS if n_length == 0 else {"runtime": 0, "energy": 0, "output_tokens": n_length}
    else:
        sources = _sources(
            PRIOR if runtime is None else ADAPTED, PRIOR if energy is None else ADAPTED, out_source, acc_source
        )
        observations = {
            "runtime": snap.n_runtime if runtime is not None else 0,
            "energy": snap.n_energy if energy is not None else 0,
            "output_tokens": snap.n_length if out_source == ADAPTED else n_length,
        }
    return Prediction(
        m.name, tin, tout, runtime_s, energy_j, accuracy, flags, load, sources, observations,
        median, upper, runtime_upper, energy_upper, length, limit, (runtime, energy),
    )  # fmt: skip
