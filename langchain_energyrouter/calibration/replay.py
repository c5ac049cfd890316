"""Replay raw traces through the online learner, in recorded order: static prior vs online.

For each trace, the prior is fitted (:func:`~langchain_energyrouter.calibration.fitting.fit_cost_model`,
as ``energyrouter fit`` does) on the first ``prior_fraction`` of its rows. Every later row is
then predicted twice *before it is seen* (by the static prior, and by the online learner's
current snapshot) and only then fed to :meth:`~langchain_energyrouter.learn.costs.CostLearner.observe`.
Each row is predicted with its true generated token count, so the scores are those of the
cost models alone, not of output-length prediction.

Scores per model and target: MAPE (mean of ``|max(pred, 0) - y| / y``) and bias (summed
predictions over summed measurements; 1.0 is right on average, what a router adding up
joules needs).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from langchain_energyrouter.cost import linear_cost
from langchain_energyrouter.errors import CalibrationError
from langchain_energyrouter.learn.costs import CostLearner
from langchain_energyrouter.learn.options import OnlineOptions

if TYPE_CHECKING:
    from langchain_energyrouter.calibration.rawdata import RawData

DEFAULT_PRIOR_FRACTION = 0.2
DEFAULT_ENERGY_METHOD = "nvml_poll"
"""Method assumed for rows of a file without an ``energy_method`` column (the original traces')."""
MIN_PRIOR_ROWS = 3
"""Rows a prior cost model needs at least (three coefficients without the interaction term)."""
TARGETS: tuple[tuple[str, str], ...] = (("runtime", "runtime_seconds"), ("energy", "energy_joules"))


@dataclass(frozen=True)
class Score:
    """Error of one predictor on the replayed rows."""

    mape: float
    bias: float
    """Summed predictions over summed measurements."""


@dataclass
class ReplayResult:
    """One trace's replay."""

    name: str
    rows_prior: int
    """Rows the prior was fitted on (the first ones)."""
    rows_replayed: int
    scores: dict[str, dict[str, Score]] = field(default_factory=dict)
    """target (``runtime``, ``energy``) -> predictor (``static``, ``online``) -> score."""
    resets: int = 0
    """Drift resets of the online learner."""
    energy_rows_learned: int = 0
    """Rows whose joules trained the online energy model (rows of another method do not)."""
    prior: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    """target -> the prior's coefficients."""
    notes: list[str] = field(default_factory=list)
    """Where a small trace made the replay fall back (more prior rows than asked, a prior fit without CV)."""


class _Accumulator:
    __slots__ = ("abs_rel", "n", "pred_sum", "true_sum")

    def __init__(self) -> None:
        self.abs_rel = 0.0
        self.pred_sum = 0.0
        self.true_sum = 0.0
        self.n = 0

    def add(self, predicted: float, measured: float) -> None:
        predicted = predicted if predicted > 0.0 else 0.0
        self.abs_rel += abs(predicted - measured) / measured
        self.pred_sum += predicted
        self.true_sum += measured
        self.n += 1

    def score(self) -> Score:
        if self.n == 0:
            return Score(mape=float("nan"), bias=float("nan"))
        return Score(mape=self.abs_rel / self.n, bias=self.pred_sum / self.true_sum)


def replay_trace(
    name: str,
    raw: RawData,
    *,
    prior_fraction: float = DEFAULT_PRIOR_FRACTION,
    options: OnlineOptions | None = None,
    energy_method: str = DEFAULT_ENERGY_METHOD,
    on_rows: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Fit the prior on the first rows of one trace, then replay the rest through a :class:`CostLearner`.

    Args:
        name: the model's name.
        raw: its validated rows, in recorded order.
        prior_fraction: share of the rows (the first ones) the prior is fitted on, in (0, 1).
        options: the online learner's tuning.
        energy_method: the rows' method when the file has no ``energy_method`` column.
        on_rows: called with the number of rows replayed since the last call (for a progress bar).

    Raises:
        CalibrationError: a bad fraction, or too few rows on either side of the split.
    """
    from langchain_energyrouter.calibration.fitting import fit_cost_model
    from langchain_energyrouter.profile import DeviceInfo, EnergyProfile, ModelProfile

    if not 0.0 < prior_fraction < 1.0:
        raise CalibrationError(f"--prior-fraction {prior_fraction}: give a share in (0, 1), e.g. 0.2.")
    frame = raw.frame
    total = len(frame)
    cut = int(prior_fraction * total)
    notes = []
    if cut < MIN_PRIOR_ROWS <= total - 1:
        notes.append(
            f"{name}: --prior-fraction {prior_fraction} gives the prior {cut} of {total} rows; it got the first "
            f"{MIN_PRIOR_ROWS}, the fewest a cost model is fitted on"
        )
        cut = MIN_PRIOR_ROWS
    if cut < MIN_PRIOR_ROWS or total - cut < 1:
        raise CalibrationError(
            f"{name}: {raw.path} has {total} usable rows; with --prior-fraction {prior_fraction} the prior gets "
            f"{cut} (at least {MIN_PRIOR_ROWS} needed) and the replay {total - cut}. Use a longer trace or "
            "another fraction."
        )
    tin = frame["input_tokens"].to_numpy(dtype=float)
    tout = frame["output_tokens"].to_numpy(dtype=float)
    measured = {target: frame[column].to_numpy(dtype=float) for target, column in TARGETS}
    if "energy_method" in frame.columns:
        methods = [str(m) for m in frame["energy_method"].fillna(energy_method)]
    else:
        methods = [energy_method] * total
    prior_methods = methods[:cut]
    profile_method = max(set(prior_methods), key=prior_methods.count)
    fitted = {
        target: fit_cost_model(tin[:cut], tout[:cut], measured[target][:cut], what=f"{name} {target} prior")[0]
        for target, _column in TARGETS
    }
    profile = EnergyProfile.new(
        {
            name: ModelProfile(
                runtime=fitted["runtime"],
                energy=fitted["energy"],
                accuracy=0.5,
                context_window=int(max(tin.max() + tout.max(), 1)) + 1,
            )
        },
        device=DeviceInfo(name="replayed trace"),
        energy_method=profile_method,  # type: ignore[arg-type]
        source=f"energyrouter replay: prior from the first {cut} rows of {raw.path}",
    )
    for target, _column in TARGETS:
        stats = fitted[target].fit
        if stats is not None and stats.folds is None:  # fitted without cross-validation: say why
            notes.append(f"{name} {target} prior: {stats.note}")
    learner = CostLearner(profile, options)
    budget = float(tout.max())
    static_b = {target: fitted[target].coefficients for target, _column in TARGETS}
    acc = {target: {"static": _Accumulator(), "online": _Accumulator()} for target, _column in TARGETS}
    runtime_y, energy_y = measured["runtime"], measured["energy"]
    step = 0
    for i in range(cut, total):
        x_in, x_out = float(tin[i]), float(tout[i])
        snap = learner.snapshot(name)
        online_runtime = snap.runtime if snap is not None and snap.runtime is not None else static_b["runtime"]
        online_energy = snap.energy if snap is not None and snap.energy is not None else static_b["energy"]
        y_runtime, y_energy = float(runtime_y[i]), float(energy_y[i])
        acc["runtime"]["static"].add(linear_cost(static_b["runtime"], x_in, x_out), y_runtime)
        acc["runtime"]["online"].add(linear_cost(online_runtime, x_in, x_out), y_runtime)
        acc["energy"]["static"].add(linear_cost(static_b["energy"], x_in, x_out), y_energy)
        acc["energy"]["online"].add(linear_cost(online_energy, x_in, x_out), y_energy)
        learner.observe(name, x_in, x_out, y_runtime, y_energy, methods[i], output_capped=x_out >= budget)
        step += 1
        if on_rows is not None and step == 1000:
            on_rows(step)
            step = 0
    if on_rows is not None and step:
        on_rows(step)
    final = learner.snapshot(name)
    return ReplayResult(
        name=name,
        rows_prior=cut,
        rows_replayed=total - cut,
        scores={target: {kind: a.score() for kind, a in by_kind.items()} for target, by_kind in acc.items()},
        resets=final.resets if final is not None else 0,
        energy_rows_learned=final.n_energy if final is not None else 0,
        prior=static_b,
        notes=notes,
    )


def as_json(results: Mapping[str, ReplayResult]) -> dict[str, Any]:
    """``{"models": {NAME: {"runtime": {"static": {"mape", "bias"}, "online": {...}}, "energy": {...}, ...}}}``."""
    return {
        "models": {
            name: {
                **{
                    target: {kind: {"mape": s.mape, "bias": s.bias} for kind, s in by_kind.items()}
                    for target, by_kind in result.scores.items()
                },
                "rows_prior": result.rows_prior,
                "rows_replayed": result.rows_replayed,
                "resets": result.resets,
                "energy_rows_learned": result.energy_rows_learned,
                "notes": list(result.notes),
            }
            for name, result in results.items()
        }
    }


def render_table(results: Mapping[str, ReplayResult]) -> str:
    """A plain-text table: per model and target, MAPE and bias of the static prior and the online learner."""
    header = ["model", "target", "static MAPE", "static bias", "online MAPE", "online bias", "rows prior/replayed"]
    rows = []
    for name, result in results.items():
        for target, by_kind in result.scores.items():
            static, online = by_kind["static"], by_kind["online"]
            rows.append(
                [
                    name,
                    target,
                    f"{static.mape:.3f}",
                    f"{static.bias:.3f}",
                    f"{online.mape:.3f}",
                    f"{online.bias:.3f}",
                    f"{result.rows_prior}/{result.rows_replayed}",
                ]
            )
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    notes = [
        f"{name}: {r.resets} drift resets; {r.energy_rows_learned} of {r.rows_replayed} rows trained energy"
        for name, r in results.items()
    ] + [note for r in results.values() for note in r.notes]
    return "\n".join(
        [
            *lines,
            "bias = summed predictions / summed measurements on the replayed rows; each row is predicted unseen",
            *notes,
        ]
    )
