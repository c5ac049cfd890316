"""Held-out error of the load model on the ML.ENERGY figures (energy per token and latency vs batch).

For every (model, task, GPU, GPU count) series with at least 4 batch sizes, sorted by
batch size, the forms ``energy/token = A + C/b`` and ``ITL = t0 + t1*b`` are fitted
(non-negative coefficients, relative least squares) on alternate batch sizes (the 1st,
3rd, 5th, ...) and predict the others. The fit is mapped to a
:class:`~langchain_energyrouter.profile.LoadModel` with ``reference_load`` = the smallest
fitted batch, and predictions are made the way the router makes them: the fitted cost at
the reference load times ``LoadModel.factors(b)``. Baseline: a load-blind model predicting
the mean of the fitted half for every batch size.

Printed per series and overall: MAPE (mean |pred/measured - 1|) and bias (summed
predictions over summed measurements) of energy per token and inter-token latency;
"interp" rows are held-out batch sizes inside the fitted range, "extrap" rows beyond it.

Run: ``python benchmarks/bench_load.py`` (``--series`` also prints every series).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from langchain_energyrouter.calibration.loadfit import fit_load_curve, load_model_from_curves

DATA = Path(__file__).resolve().parents[1] / "calibration" / "data" / "ml-energy" / "energy_by_batch.csv.gz"
SERIES_KEYS = ["model_id", "task", "gpu", "num_gpus"]


@dataclass
class Errors:
    """Held-out predictions and measurements of one quantity."""

    predicted: list[float] = field(default_factory=list)
    measured: list[float] = field(default_factory=list)

    def add(self, predicted: float, measured: float) -> None:
        self.predicted.append(predicted)
        self.measured.append(measured)

    def extend(self, other: Errors) -> None:
        self.predicted += other.predicted
        self.measured += other.measured

    @property
    def mape(self) -> float:
        return sum(abs(p / m - 1) for p, m in zip(self.predicted, self.measured, strict=True)) / len(self.measured)

    @property
    def bias(self) -> float:
        return sum(self.predicted) / sum(self.measured)

    def __str__(self) -> str:
        return f"{self.mape:6.1%} {self.bias:5.2f}" if self.measured else "     -     -"


KINDS = ("energy", "itl")
MODELS = ("load", "blind")


def evaluate(series: pd.DataFrame) -> dict[tuple[str, str, str], Errors]:
    """Held-out errors of one series by (quantity, model, interp|extrap)."""
    series = series.sort_values("avg_batch_size").reset_index(drop=True)
    fit = series.iloc[::2]
    held = series.iloc[1::2]
    curves = fit_load_curve(
        fit["avg_batch_size"].tolist(), fit["energy_per_token_j"].tolist(), fit["median_itl_ms"].tolist()
    )
    reference = float(fit["avg_batch_size"].min())
    load = load_model_from_curves(curves, reference_load=reference, max_load=float(fit["avg_batch_size"].max()))
    energy_ref, latency_ref = curves.energy(reference), curves.latency(reference)
    blind_energy, blind_latency = float(fit["energy_per_token_j"].mean()), float(fit["median_itl_ms"].mean())
    out: dict[tuple[str, str, str], Errors] = {}
    for row in held.itertuples():
        batch = float(row.avg_batch_size)
        where = "extrap" if load.max_load is not None and batch > load.max_load else "interp"
        runtime_factor, energy_factor = load.factors(batch)
        figures = {
            ("energy", "load"): (energy_ref * energy_factor, row.energy_per_token_j),
            ("energy", "blind"): (blind_energy, row.energy_per_token_j),
            ("itl", "load"): (latency_ref * runtime_factor, row.median_itl_ms),
            ("itl", "blind"): (blind_latency, row.median_itl_ms),
        }
        for (kind, model), (predicted, measured) in figures.items():
            out.setdefault((kind, model, where), Errors()).add(float(predicted), float(measured))
    return out


def merged(results: dict[tuple[str, str, str], Errors], kind: str, model: str, where: str | None = None) -> Errors:
    total = Errors()
    for (k, m, w), errors in results.items():
        if k == kind and m == model and (where is None or w == where):
            total.extend(errors)
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--series", action="store_true", help="print every series")
    args = parser.parse_args(argv)
    data = pd.read_csv(DATA)
    overall: dict[tuple[str, str, str], Errors] = {}
    per_series_mape: dict[tuple[str, str], list[float]] = {}
    skipped = 0
    header = (
        f"{'series':62s} {'n':>3s}  {'energy load':>12s}  {'energy blind':>12s}  {'itl load':>12s}  {'itl blind':>12s}"
    )
    if args.series:
        print(header + "   (MAPE bias)")
    for key, series in data.groupby(SERIES_KEYS):
        if len(series) < 4:
            skipped += 1
            continue
        results = evaluate(series)
        for (kind, model, where), errors in results.items():
            overall.setdefault((kind, model, where), Errors()).extend(errors)
        for kind in KINDS:
            for model in MODELS:
                per_series_mape.setdefault((kind, model), []).append(merged(results, kind, model).mape)
        if args.series:
            name = f"{key[0].split('/')[-1]} {key[1]} {key[3]}x{key[2]}"
            cells = [str(merged(results, kind, model)) for kind in KINDS for model in MODELS]
            print(f"{name[:62]:62s} {len(series):3d}  " + "  ".join(f"{c:>12s}" for c in cells))
    n_series = len(per_series_mape[("energy", "load")])
    n_held = len(merged(overall, "energy", "load").measured)
    print(
        f"ML.ENERGY ({DATA.name}): {n_series} series with >= 4 batch sizes ({skipped} shorter skipped), "
        f"{n_held} held-out batch sizes; fit on alternate batch sizes, predict the others"
    )
    print(f"{'':28s} {'MAPE':>7s} {'bias':>6s}   {'median series MAPE':>18s}")
    for kind in KINDS:
        for model in MODELS:
            label = {"load": "load model", "blind": "load-blind (fit mean)"}[model]
            errors = merged(overall, kind, model)
            median = float(pd.Series(per_series_mape[(kind, model)]).median())
            print(f"{kind + ' ' + label:28s} {errors.mape:7.1%} {errors.bias:6.2f}   {median:18.1%}")
            for where in ("interp", "extrap"):
                part = merged(overall, kind, model, where)
                if part.measured:
                    print(f"{'  ' + where + f' ({len(part.measured)})':28s} {part.mape:7.1%} {part.bias:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
