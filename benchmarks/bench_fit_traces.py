"""Held-out MAPE on the original GPU traces: plain OLS vs our fit (estimator chosen by CV).

Each trace is split at random 80/20 (seed 0). Plain OLS (``y ~ tin + tout + tin*tout``,
statsmodels) is fitted on the 80%; ours runs the same selection `energyrouter fit`
does (OLS / WLS 1/y^2 / least relative absolute error, with and without the
interaction term, by 5-fold CV MAPE) on the same 80%. Both are scored on the 20%.

Run: ``python benchmarks/bench_fit_traces.py``
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import statsmodels.api as sm

from langchain_energyrouter.calibration.fitting import fit_cost_model
from langchain_energyrouter.calibration.rawdata import read_raw

TRACES = Path(__file__).resolve().parents[1] / "calibration" / "traces" / "original"
FILES = {
    "phi-3-mini": "phi-3-mini-4k-instruct.csv.gz",
    "mistral-7b": "mistral-7B-instruct-v0.2.csv.gz",
    "falcon-7b": "falcon-7b-instruct.csv.gz",
}


def mape(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.abs(np.maximum(pred, 0.0) - y) / y))


def main() -> int:
    print(f"{'model':<11} {'target':<8} {'n test':>7} {'plain OLS':>10} {'ours':>8}  chosen estimator")
    worse = 0
    for name, file in FILES.items():
        frame = read_raw(TRACES / file).frame
        order = np.random.default_rng(0).permutation(len(frame))
        cut = int(0.8 * len(frame))
        train, test = frame.iloc[order[:cut]], frame.iloc[order[cut:]]
        for target, column in (("runtime", "runtime_seconds"), ("energy", "energy_joules")):
            tin, tout, y = (train[c].to_numpy(float) for c in ("input_tokens", "output_tokens", column))
            ttin, ttout, ty = (test[c].to_numpy(float) for c in ("input_tokens", "output_tokens", column))
            plain = sm.OLS(y, np.column_stack([np.ones_like(tin), tin, tout, tin * tout])).fit()
            plain_mape = mape(np.column_stack([np.ones_like(ttin), ttin, ttout, ttin * ttout]) @ plain.params, ty)
            t0 = time.perf_counter()
            ours, _ = fit_cost_model(tin, tout, y)
            ours_mape = mape(np.array([ours.raw(i, o) for i, o in zip(ttin, ttout, strict=True)]), ty)
            chosen = ours.fit.note.split(" by ")[0].removeprefix("Chose ") if ours.fit else "?"
            worse += ours_mape > plain_mape + 1e-9
            print(
                f"{name:<11} {target:<8} {len(ty):>7} {plain_mape:>10.4f} {ours_mape:>8.4f}  {chosen} "
                f"({time.perf_counter() - t0:.1f} s)"
            )
    print("ours is no worse than plain OLS on every model and target" if not worse else f"WORSE on {worse} fits")
    return 1 if worse else 0


if __name__ == "__main__":
    sys.exit(main())
