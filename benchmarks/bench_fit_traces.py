"""Held-out bias and error, in time order, on the original GPU traces: plain OLS vs the chosen fit.

Each trace is cut in recorded (time) order: the fit sees the first 80% of the rows, and is
scored on the last 20% (no shuffling across time, so neighbouring rows of a drifting trace
never sit on both sides). Two fits of the same rows:

* plain OLS, ``y ~ tin + tout + tin*tout`` (statsmodels, no sign constraint);
* ours: what ``energyrouter fit`` does (sign-constrained least squares / WLS 1/y^2 / least
  relative absolute error, with and without the interaction, chosen by held-out bias then MAPE
  over blocked folds of the 80%).

Both are judged by the same two figures, neither of which either estimator minimises:
bias = summed predictions / summed measurements on the last 20% (1 = right on average), and
MAPE. The last 20% come after the drift of the first 80%, so both fits are biased low there;
what matters is the comparison. Output length: least squares on the observed (cut) lengths
vs the censored-normal fit, scored on ``min(length, 50)``, the only length observable.

Run: ``python benchmarks/bench_fit_traces.py``
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import statsmodels.api as sm

from langchain_energyrouter.calibration.fitting import fit_cost_model
from langchain_energyrouter.calibration.lengthfit import expected_observed_length, fit_output_length
from langchain_energyrouter.calibration.rawdata import read_raw

TRACES = Path(__file__).resolve().parents[1] / "calibration" / "traces" / "original"
FILES = {
    "phi-3-mini": "phi-3-mini-4k-instruct.csv.gz",
    "mistral-7b": "mistral-7B-instruct-v0.2.csv.gz",
    "falcon-7b": "falcon-7b-instruct.csv.gz",
}
BUDGET = 50


def scores(pred: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(MAPE, bias) of predictions clamped at 0, as the scheduler clamps them."""
    pred = np.maximum(pred, 0.0)
    return float(np.mean(np.abs(pred - y) / np.maximum(y, 1e-12))), float(pred.sum() / y.sum())


def main() -> int:
    print("train: first 80% of each trace in time order; test: the last 20%")
    print(f"{'model':<11} {'target':<8} {'OLS MAPE':>9} {'OLS bias':>9} {'ours MAPE':>10} {'ours bias':>10}  chosen")
    for name, file in FILES.items():
        frame = read_raw(TRACES / file).frame
        cut = int(0.8 * len(frame))
        train, test = frame.iloc[:cut], frame.iloc[cut:]
        tin, tout = (train[c].to_numpy(float) for c in ("input_tokens", "output_tokens"))
        ttin, ttout = (test[c].to_numpy(float) for c in ("input_tokens", "output_tokens"))
        x_test = np.column_stack([np.ones_like(ttin), ttin, ttout, ttin * ttout])
        for target, column in (("runtime", "runtime_seconds"), ("energy", "energy_joules")):
            y, ty = train[column].to_numpy(float), test[column].to_numpy(float)
            plain = sm.OLS(y, np.column_stack([np.ones_like(tin), tin, tout, tin * tout])).fit()
            ours, _ = fit_cost_model(tin, tout, y, what=f"{name} {target}")
            plain_mape, plain_bias = scores(x_test @ plain.params, ty)
            ours_mape, ours_bias = scores(x_test @ np.array(ours.coefficients), ty)
            held = f", {'+'.join(ours.fit.constrained)} held at 0" if ours.fit and ours.fit.constrained else ""
            chosen = (ours.fit.note.split(" by ")[0].removeprefix("Chose ") if ours.fit else "?") + held
            print(
                f"{name:<11} {target:<8} {plain_mape:>9.4f} {plain_bias:>9.3f} {ours_mape:>10.4f} {ours_bias:>10.3f}  "
                f"{chosen}"
            )
        observed = np.minimum(ttout, BUDGET)
        naive = sm.OLS(tout, sm.add_constant(tin)).fit().params
        naive_mape, naive_bias = scores(naive[0] + naive[1] * ttin, observed)
        length, _ = fit_output_length(tin, tout, censored_at=BUDGET)
        sigma = (
            float(length.fit.note.split("sigma ")[1].split(" ")[0]) if length.fit and "sigma" in length.fit.note else 0
        )
        mu = np.maximum(length.intercept + length.slope * ttin, 1.0)
        ours_len = expected_observed_length(mu, sigma, BUDGET) if sigma else mu
        len_mape, len_bias = scores(ours_len, observed)
        print(
            f"{name:<11} {'length':<8} {naive_mape:>9.4f} {naive_bias:>9.3f} {len_mape:>10.4f} {len_bias:>10.3f}  "
            f"censored normal, uncut mean {length.intercept:.1f}{length.slope:+.3f}*tin "
            f"(least squares on cut lengths: {naive[0]:.1f}{naive[1]:+.3f}*tin)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
