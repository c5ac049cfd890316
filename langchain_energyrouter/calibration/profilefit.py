"""Fit one model's profile entry from its validated raw rows.

:func:`fit_model` combines the runtime and energy cost models
(:func:`~langchain_energyrouter.calibration.fitting.fit_cost_model`) and the output-length
predictor (:func:`~langchain_energyrouter.calibration.lengthfit.fit_output_length`), both
cross-validated with the folds of :mod:`~langchain_energyrouter.calibration.folds`, into a
:class:`~langchain_energyrouter.profile.ModelProfile`; :class:`FitReport` says what it did.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from langchain_energyrouter.calibration.fitting import ESTIMATORS, CandidateFit, fit_cost_model
from langchain_energyrouter.calibration.folds import DEFAULT_FOLDS, cell_groups
from langchain_energyrouter.calibration.lengthfit import fit_output_length
from langchain_energyrouter.profile import ModelProfile

if TYPE_CHECKING:
    from langchain_energyrouter.calibration.rawdata import RawData

LENGTH_MAPE_WARN = 1.0
"""An output-length fit whose held-out MAPE exceeds this (100%) is warned about."""


@dataclass
class FitReport:
    """What :func:`fit_model` did, for the summary table and stderr."""

    name: str
    runtime: list[CandidateFit] = field(default_factory=list)
    energy: list[CandidateFit] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


def fit_model(
    name: str,
    raw: RawData,
    *,
    accuracy: float,
    context_window: int,
    model_id: str | None = None,
    accuracy_by_task: dict[str, float] | None = None,
    estimators: Sequence[str] = ESTIMATORS,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    length_rows: str = "auto",
    censored_at: int | Literal["auto"] | None = "auto",
    cv: str = "auto",
    warn: Callable[[str], None] | None = None,
) -> tuple[ModelProfile, FitReport]:
    """Fit one model's profile entry from its validated raw rows.

    Args:
        length_rows: rows for the output-length fit: ``"natural"`` (unforced generations,
            ``design_cell`` starting with ``natural:``), ``"all"`` (traces), or ``"auto"``
            (natural rows when the file has a design column with any, else all rows).
        censored_at: the generation budget of the length rows (see :func:`fit_output_length`).
        cv: ``auto``: grouped by design cell when the file has design cells, else blocked in row order.
    """
    import numpy as np

    report = FitReport(name=name)
    frame = raw.frame
    if raw.rows_dropped:
        detail = ", ".join(f"{v} {k}" for k, v in raw.drop_reasons.items())
        report.messages.append(f"{name}: dropped {raw.rows_dropped} of {raw.rows_total} rows of {raw.path} ({detail})")
    tin = frame["input_tokens"].to_numpy(dtype=float)
    tout = frame["output_tokens"].to_numpy(dtype=float)
    has_design = bool(frame["design_cell"].str.len().gt(0).any())
    groups = cell_groups(frame["design_cell"].tolist()) if has_design else None
    fitted = {
        target: fit_cost_model(
            tin,
            tout,
            frame[column].to_numpy(dtype=float),
            estimators=estimators,
            folds=folds,
            seed=seed,
            rows_dropped=raw.rows_dropped,
            what=f"{name} {target}",
            cv=cv,
            groups=groups,
            warn=report.messages.append,
        )
        for target, column in (("runtime", "runtime_seconds"), ("energy", "energy_joules"))
    }
    (runtime, report.runtime), (energy, report.energy) = fitted["runtime"], fitted["energy"]
    natural = frame["design_cell"].str.startswith("natural:").to_numpy()
    use_natural = length_rows == "natural" or (length_rows == "auto" and has_design)
    mask = natural if use_natural else np.ones(len(frame), dtype=bool)
    source_rows = "natural (unforced) rows" if use_natural else "all rows"
    length_groups = [g for g, keep in zip(groups, mask, strict=True) if keep] if groups is not None else None
    output_length, message = fit_output_length(
        tin[mask],
        tout[mask],
        folds=folds,
        seed=seed,
        source_rows=source_rows,
        censored_at=censored_at,
        cv=cv,
        groups=length_groups,
    )
    if message:
        report.messages.append(f"{name}: {message}")
    length_fit = output_length.fit
    if length_fit is not None and length_fit.mape_holdout is not None and length_fit.mape_holdout > LENGTH_MAPE_WARN:
        report.messages.append(
            f"{name}: the output-length fit is off by {100 * length_fit.mape_holdout:.0f}% on held-out rows (MAPE): "
            "answer lengths are predicted poorly, and so are runtime and energy before a call. Measure more "
            "natural answers (--natural-max-new-tokens, a larger --suite) or train a per-prompt predictor "
            "(`energyrouter accuracy --outcomes`, then `energyrouter train`)."
        )
    profile = ModelProfile(
        model_id=model_id,
        runtime=runtime,
        energy=energy,
        output_length=output_length,
        accuracy=accuracy,
        accuracy_by_task=dict(accuracy_by_task or {}),
        context_window=context_window,
    )
    if warn is not None:
        for line in report.messages:
            warn(line)
    return profile, report
