"""Normalisers: the accuracy axis stays bounded and continuous; hybrid keeps magnitude; the hot path stays light."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from langchain_energyrouter import NORMALIZERS, Scheduler, Weights
from langchain_energyrouter.decide.scoring import (
    ACCURACY_NORMALIZERS,
    get_accuracy_normalizer,
    hybrid,
    relative_accuracy,
)
from tests.conftest import make_model, make_profile

_acc = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@pytest.mark.parametrize(
    ("best", "expected"),
    [(0.99, 0.09 / 0.99), (0.999, 0.099 / 0.999), (1.0, 0.1)],
)
def test_relative_accuracy_is_bounded_and_continuous(best: float, expected: float) -> None:
    # The plain relative error rate gave 9, 99 and then 1 for these three pairs.
    assert relative_accuracy([best, 0.90]) == pytest.approx([0.0, expected])


def test_relative_accuracy_lets_energy_weigh_in_the_scheduler() -> None:
    """0.99 vs 0.90 accuracy at twice the energy: with equal weights the frugal model wins.

    The error-rate form scored the 9-point accuracy gap as 9 (900%) against the 100% energy gap.
    """
    profile = make_profile(
        {
            "precise": make_model(runtime=(1.0, 0, 0, 0), energy=(20.0, 0, 0, 0), accuracy=0.99),
            "frugal": make_model(runtime=(1.0, 0, 0, 0), energy=(10.0, 0, 0, 0), accuracy=0.90),
        }
    )
    decision = Scheduler(profile, Weights(accuracy=1, energy=1), normalization="relative").decide(10, 10)
    assert decision.candidates["frugal"].accuracy_term == pytest.approx(0.09 / 0.99)
    assert decision.candidates["precise"].energy_term == pytest.approx(1.0)
    assert decision.model == "frugal"


def test_hybrid_keeps_how_far_apart_two_candidates_are() -> None:
    # Without the anchor at 0, any two values gave [0, 2].
    close = hybrid([100.0, 101.0])
    far = hybrid([1.0, 100.0])
    assert close[0] == far[0] == 0.0
    assert close[1] < 0.1 < 1.0 < far[1]
    assert hybrid([100.0, 101.0, 102.0])[2] < 0.2 < 1.0 < hybrid([1.0, 2.0, 3.0])[2]
    assert hybrid([3.0, 3.0]) == [0.0, 0.0]
    assert hybrid([5.0]) == [0.0]


def test_custom_normalizer_gets_the_error_rate() -> None:
    def identity(values: Sequence[float]) -> list[float]:
        return list(values)

    assert get_accuracy_normalizer(identity)([0.75, 0.5]) == [0.25, 0.5]
    with pytest.raises(ValueError, match="Unknown normalization 'zscore'"):
        get_accuracy_normalizer("zscore")


@pytest.mark.parametrize("normalization", sorted(NORMALIZERS))
@settings(max_examples=100, deadline=None)
@given(accuracies=st.lists(_acc, min_size=1, max_size=12))
def test_accuracy_normalizers_reverse_order_and_stay_bounded(normalization: str, accuracies: list[float]) -> None:
    terms = ACCURACY_NORMALIZERS[normalization](accuracies)
    assert len(terms) == len(accuracies)
    assert all(math.isfinite(t) and t >= -1e-12 for t in terms)
    best = accuracies.index(max(accuracies))
    assert terms[best] == pytest.approx(0.0, abs=1e-12)
    for i, acc_i in enumerate(accuracies):
        for j, acc_j in enumerate(accuracies):
            if acc_i >= acc_j:
                assert terms[i] <= terms[j] + 1e-12
    if normalization in ("minmax", "relative"):
        assert max(terms) <= 1.0 + 1e-12


@settings(max_examples=100, deadline=None)
@given(low=_acc, best=_acc, nudge=st.floats(min_value=0.0, max_value=1e-6))
def test_relative_accuracy_has_no_jumps(low: float, best: float, nudge: float) -> None:
    """A tiny change of the best accuracy moves the terms by about as little (no 99 -> 1 jump)."""
    best = max(best, low)
    higher = min(1.0, best + nudge)
    before = relative_accuracy([best, low])
    after = relative_accuracy([higher, low])
    if best > 1e-3:
        assert abs(after[1] - before[1]) <= 2e-3


def test_hot_path_imports_no_numpy() -> None:
    code = (
        "import sys, langchain_energyrouter, langchain_energyrouter.decide.scheduler, "
        "langchain_energyrouter.decide.scoring, "
        "langchain_energyrouter.router, langchain_energyrouter.callbacks; "
        "assert 'numpy' not in sys.modules, 'numpy was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_numpy_is_not_a_core_dependency() -> None:
    tomllib = pytest.importorskip("tomllib")
    root = Path(__file__).resolve().parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    core = {dep.split(">")[0].split("=")[0].split("<")[0].strip() for dep in project["dependencies"]}
    assert "numpy" not in core
    assert {"filelock", "platformdirs"} <= core
    assert any(dep.startswith("numpy") for dep in project["optional-dependencies"]["calibrate"])


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ((1e308, 1e308, 1e308), (1 / 3, 1 / 3, 1 / 3)),
        ((1e308, 0.0, 5e307), (2 / 3, 0.0, 1 / 3)),
        ((5e-324, 0.0, 0.0), (1.0, 0.0, 0.0)),
    ],
)
def test_weights_near_the_float_limits_normalise_without_overflow(
    given: tuple[float, float, float], expected: tuple[float, float, float]
) -> None:
    weights = Weights(accuracy=given[0], energy=given[1], time=given[2])
    got = (weights.accuracy, weights.energy, weights.time)
    assert got == pytest.approx(expected)
    assert math.fsum(got) == pytest.approx(1.0)
