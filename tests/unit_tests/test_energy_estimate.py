"""The CPU-time estimate meter, the null meter, and shared window behaviour."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator

import pytest

from langchain_energyrouter.energy import (
    METERS,
    EnergyMeter,
    EnergyReading,
    EstimateMeter,
    NullMeter,
    WindowTracker,
    get_meter,
)
from langchain_energyrouter.energy.estimate import DEFAULT_WATTS_PER_THREAD_W
from langchain_energyrouter.errors import MeterError


def ticks(*values_s: float) -> Callable[[], float]:
    it: Iterator[float] = iter(values_s)
    return lambda: next(it)


def test_estimate_is_cpu_seconds_times_watts() -> None:
    meter = EstimateMeter(10.0, clock=ticks(0.0, 3.0), cpu_clock=ticks(5.0, 6.5))
    with meter:
        reading = meter.end(meter.begin())
    assert reading.energy_j == pytest.approx(15.0)
    assert reading.energy_j_by_device == pytest.approx({"cpu:process": 15.0})
    assert reading.runtime_s == pytest.approx(3.0)
    assert reading.method == "estimate"
    assert reading.is_estimate is True
    assert reading.flags == ()


def test_estimate_default_and_real_clock() -> None:
    assert DEFAULT_WATTS_PER_THREAD_W == 4.0
    with EstimateMeter() as meter:
        handle = meter.begin()
        sum(i * i for i in range(200_000))  # burn some CPU
        reading = meter.end(handle)
    assert reading.is_estimate is True
    assert reading.energy_j is not None and reading.energy_j >= 0.0
    assert reading.runtime_s > 0.0


def test_estimate_without_cpu_progress_is_below_resolution() -> None:
    with EstimateMeter(clock=ticks(0.0, 1.0), cpu_clock=ticks(2.0, 2.0)) as meter:
        reading = meter.end(meter.begin())
    assert reading.energy_j == 0.0
    assert "below_resolution" in reading.flags


@pytest.mark.parametrize("watts", [0.0, -1.0, float("nan"), float("inf")])
def test_estimate_rejects_bad_watts(watts: float) -> None:
    with pytest.raises(MeterError, match="watts_per_thread_w"):
        EstimateMeter(watts)


def test_concurrent_windows_are_flagged_overlapped() -> None:
    with EstimateMeter() as meter:
        barrier = threading.Barrier(8)
        readings: list[EnergyReading] = []
        lock = threading.Lock()

        def work() -> None:
            handle = meter.begin()
            barrier.wait()  # all eight windows are open here
            reading = meter.end(handle)
            with lock:
                readings.append(reading)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(readings) == 8
        assert all("overlapped" in r.flags for r in readings)
        assert "overlapped" not in meter.end(meter.begin()).flags


def test_shared_tracker_sees_windows_of_another_meter() -> None:
    tracker = WindowTracker()
    with EstimateMeter(tracker=tracker) as a, EstimateMeter(tracker=tracker) as b:
        handle_a = a.begin()
        reading_b = b.end(b.begin())
        reading_a = a.end(handle_a)
        assert tracker.open_count("cpu:process") == 0
    assert "overlapped" in reading_a.flags and "overlapped" in reading_b.flags


def test_null_meter_measures_time_only() -> None:
    with NullMeter(clock=ticks(1.0, 1.25)) as meter:
        reading = meter.end(meter.begin())
    assert reading.energy_j is None
    assert reading.energy_j_by_device == {}
    assert reading.runtime_s == pytest.approx(0.25)
    assert reading.method == "none"
    assert reading.is_estimate is False
    assert reading.flags == ("not_measured_locally",)


def test_as_metadata_is_json_and_round_trips() -> None:
    with EstimateMeter(clock=ticks(0.0, 1.0), cpu_clock=ticks(0.0, 0.5)) as meter:
        reading = meter.end(meter.begin())
    metadata = reading.as_metadata()
    assert set(metadata) == {"energy_j", "runtime_s", "method", "is_estimate", "devices", "flags", "energy_j_by_device"}
    assert json.loads(json.dumps(metadata)) == metadata
    assert EnergyReading.from_metadata(metadata) == reading
    with pytest.raises(MeterError, match="malformed"):
        EnergyReading.from_metadata({"energy_j": 1.0})


def test_reading_rejects_inconsistent_fields() -> None:
    with pytest.raises(MeterError, match="Unknown energy method"):
        EnergyReading(1.0, {}, 1.0, "guess", True)
    with pytest.raises(MeterError, match="energy_j is None exactly when"):
        EnergyReading(None, {}, 1.0, "estimate", True)


def test_registry_and_protocol() -> None:
    assert list(METERS) == ["nvml_counter", "nvml_poll", "rapl", "estimate", "none"]
    meter = get_meter("estimate", watts_per_thread_w=2.0)
    with meter:
        assert isinstance(meter, EnergyMeter)
        assert isinstance(meter, EstimateMeter)
        assert meter.watts_per_thread_w == 2.0
    with pytest.raises(MeterError, match="Unknown energy meter 'magic'"):
        get_meter("magic")
