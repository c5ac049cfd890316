"""Fitting the load model: from calibration rows at several concurrency levels, and from ML.ENERGY curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from langchain_energyrouter.calibration.loadfit import (
    at_reference_load,
    fit_load_curve,
    fit_load_model,
    load_levels,
    load_model_from_curves,
    with_load_model,
)
from langchain_energyrouter.errors import CalibrationError
from langchain_energyrouter.profile import CostModel, LoadModel, ModelProfile

ML_ENERGY = Path(__file__).resolve().parents[3] / "calibration" / "data" / "ml-energy" / "energy_by_batch.csv.gz"


def _rows(per_request: float, share: float, levels: tuple[int, ...] = (1, 2, 4), noise: float = 0.02) -> pd.DataFrame:
    """Raw rows of a grid measured at ``levels``, costs following a known load model."""
    rng = np.random.default_rng(1)
    truth = LoadModel(runtime_per_request=per_request, energy_fixed_share=share)
    rows = []
    for n in levels:
        runtime_factor, energy_factor = truth.factors(n)
        for rep in (1, 2):
            for tin in (8, 32, 128):
                for tout in (4, 16):
                    runtime = (0.05 + 0.02 * tout + 0.0001 * tin) * runtime_factor
                    energy = runtime * 30.0 / runtime_factor * energy_factor
                    rows.append(
                        {
                            "input_tokens": tin,
                            "output_tokens": tout,
                            "runtime_seconds": runtime * (1 + noise * rng.standard_normal()),
                            "energy_joules": energy * (1 + noise * rng.standard_normal()),
                            "design_cell": f"grid:in={tin},out={tout},rep={rep}" + (f",load={n}" if n > 1 else ""),
                            "in_flight": n,
                        }
                    )
    return pd.DataFrame(rows)


def test_recovers_a_known_load_model_with_held_out_error() -> None:
    load = fit_load_model(_rows(per_request=0.15, share=0.6))
    assert load is not None
    assert load.runtime_per_request == pytest.approx(0.15, abs=0.02)
    assert load.energy_fixed_share == pytest.approx(0.6, abs=0.05)
    assert (load.reference_load, load.max_load) == (1.0, 4.0)
    assert load.fit is not None and load.fit.n == 24 and load.fit.constrained == []
    assert load.fit.mape_holdout is not None and load.fit.mape_holdout < 0.05  # noise is 2%
    assert load.fit.bias_holdout == pytest.approx(1.0, abs=0.03)
    assert load.fit.cv is not None and "grouped" in load.fit.cv


def test_energy_rising_with_load_is_held_at_zero_and_reported() -> None:
    frame = _rows(per_request=0.3, share=0.0)
    frame.loc[frame["in_flight"] > 1, "energy_joules"] *= 1.5  # more energy per request under load
    load = fit_load_model(frame)
    assert load is not None
    assert load.energy_fixed_share == 0.0
    assert load.fit is not None and load.fit.constrained == ["energy_fixed_share"]
    messages: list[str] = []
    entry = _entry()
    assert with_load_model(entry, frame, warn=messages.append).load is not None
    assert messages and "energy_fixed_share" in messages[0]


def test_runtime_falling_with_load_is_held_at_zero() -> None:
    frame = _rows(per_request=0.0, share=0.5)
    frame.loc[frame["in_flight"] > 1, "runtime_seconds"] *= 0.7
    load = fit_load_model(frame)
    assert load is not None and load.runtime_per_request == 0.0
    assert load.fit is not None and "runtime_per_request" in load.fit.constrained


def _entry() -> ModelProfile:
    cost = CostModel(intercept=1.0, input_tokens=0.0, output_tokens=0.1)
    return ModelProfile(runtime=cost, energy=cost, accuracy=0.5, context_window=2048)


def test_one_level_or_old_files_fit_nothing() -> None:
    frame = _rows(0.1, 0.5, levels=(1,))
    assert fit_load_model(frame) is None
    old = frame.drop(columns=["in_flight"])  # a raw file from before the column
    assert load_levels(old) == [1.0] and fit_load_model(old) is None
    assert with_load_model(_entry(), old).load is None
    assert at_reference_load(old) is old


def test_reference_rows_are_the_cost_models_rows() -> None:
    frame = _rows(0.1, 0.5)
    ref = at_reference_load(frame)
    assert len(ref) == 12 and set(ref["in_flight"]) == {1}


def test_levels_without_a_shared_cell_are_refused() -> None:
    frame = _rows(0.1, 0.5)
    frame.loc[frame["in_flight"] > 1, "input_tokens"] += 1
    with pytest.raises(CalibrationError, match=r"share no \(input, output\) length.*--concurrency"):
        fit_load_model(frame)


def _series(model: str, task: str = "lm-arena-chat", gpu: str = "H100") -> pd.DataFrame:
    data = pd.read_csv(ML_ENERGY)
    series = data[(data["model_id"] == model) & (data["task"] == task) & (data["gpu"] == gpu) & (data["num_gpus"] == 1)]
    return series.sort_values("avg_batch_size").reset_index(drop=True)


def test_curve_mapping_to_the_load_model_is_exact() -> None:
    series = _series("meta-llama/Llama-3.1-8B-Instruct")
    curves = fit_load_curve(series["avg_batch_size"], series["energy_per_token_j"], series["median_itl_ms"])
    for reference in (1.0, 8.0, 64.0):
        load = load_model_from_curves(curves, reference)
        for n in (1.0, 8.0, 100.0, 512.0):
            runtime_factor, energy_factor = load.factors(n)
            assert curves.energy(reference) * energy_factor == pytest.approx(curves.energy(n), rel=1e-9)
            assert curves.latency(reference) * runtime_factor == pytest.approx(curves.latency(n), rel=1e-9)


@pytest.mark.parametrize(
    ("model", "task"),
    [
        ("meta-llama/Llama-3.1-8B-Instruct", "lm-arena-chat"),
        ("Qwen/Qwen3-8B", "lm-arena-chat"),
        ("openai/gpt-oss-20b", "gpqa"),
    ],
)
def test_ml_energy_held_out_batch_sizes_beat_a_load_blind_model(model: str, task: str) -> None:
    """Fit on alternate batch sizes of a real ML.ENERGY series (one model, task, GPU), predict the others."""
    series = _series(model, task)
    assert len(series) >= 4, f"{model}: {len(series)} batch sizes in {ML_ENERGY.name}"
    fit, held = series.iloc[::2], series.iloc[1::2]
    curves = fit_load_curve(fit["avg_batch_size"], fit["energy_per_token_j"], fit["median_itl_ms"])
    reference = float(fit["avg_batch_size"].min())
    load = load_model_from_curves(curves, reference)
    assert 0.0 < load.energy_fixed_share <= 1.0 and load.runtime_per_request > 0.0
    factors = [load.factors(b) for b in held["avg_batch_size"]]
    energy = np.array([curves.energy(reference) * f[1] for f in factors])
    latency = np.array([curves.latency(reference) * f[0] for f in factors])
    energy_mape = float(np.mean(np.abs(energy / held["energy_per_token_j"] - 1)))
    latency_mape = float(np.mean(np.abs(latency / held["median_itl_ms"] - 1)))
    blind_energy = float(np.mean(np.abs(fit["energy_per_token_j"].mean() / held["energy_per_token_j"] - 1)))
    blind_latency = float(np.mean(np.abs(fit["median_itl_ms"].mean() / held["median_itl_ms"] - 1)))
    assert energy_mape < 0.25 and energy_mape < blind_energy / 3
    assert latency_mape < 0.35 and latency_mape < blind_latency


def test_curve_needs_two_batch_sizes() -> None:
    with pytest.raises(CalibrationError, match="at least two distinct batch sizes"):
        fit_load_curve([8.0, 8.0], [0.4, 0.41], [7.0, 7.1])
    with pytest.raises(CalibrationError, match="must be positive"):
        fit_load_curve([8.0, 16.0], [0.4, 0.0], [7.0, 7.1])


def test_one_stalled_batch_does_not_set_the_slope() -> None:
    """A shared CPU stalls a batch now and then (another process takes the cores): the fit is robust to it."""
    frame = _rows(per_request=0.1, share=0.5)
    stalled = frame.index[(frame["in_flight"] == 2)][0]
    frame.loc[stalled, "runtime_seconds"] *= 20
    load = fit_load_model(frame)
    assert load is not None and load.runtime_per_request == pytest.approx(0.1, abs=0.03)
