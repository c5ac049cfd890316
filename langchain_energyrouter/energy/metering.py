"""The router's meters: one per device its candidates run on, and windows that never fail a call.

Which meter a candidate gets (:meth:`CandidateMeters.meter_for`):

* a meter passed to the router (``meter=``) wins for every local candidate;
* a local pipeline on ``cuda:N`` (or split over several GPUs): an NVML meter for those GPUs only
  (``nvml_counter``, else ``nvml_poll``; without NVML nothing is measured,
  method ``"none"``: the CPU's figures would not be the GPU's joules);
* a local pipeline on the CPU, or a local model whose device is unknown:
  RAPL, else the CPU-time estimate;
* a remote candidate: :class:`~langchain_energyrouter.energy.NullMeter` (time only).

Candidates on one device share one meter, so their windows see each other
(``overlapped``). A meter that raises in ``begin`` or ``end`` degrades the
answer to a reading without joules (method ``"none"``, flag ``"meter_failed"``)
instead of failing the user's request (:class:`MeterWindow`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from langchain_energyrouter.energy.base import EnergyMeter, EnergyReading
from langchain_energyrouter.energy.null import NullMeter

FLAG_METER_FAILED = "meter_failed"
"""The meter raised; the reading carries time only (method ``"none"``)."""

GPU_METHODS = ("nvml_counter", "nvml_poll", "none")
"""Meters tried, in order, for a candidate on a CUDA device."""

CPU_METHODS = ("rapl", "estimate")
"""Meters tried, in order, for a candidate on the CPU (or on a local device the router cannot tell)."""

__all__ = ["CPU_METHODS", "FLAG_METER_FAILED", "GPU_METHODS", "CandidateMeters", "MeterWindow"]


def _build_meter(device: str) -> EnergyMeter:
    from langchain_energyrouter.energy import select_meter

    if device.startswith("cuda"):
        meter, _ = select_meter(devices=device.split(","), methods=GPU_METHODS)
    else:
        meter, _ = select_meter(methods=CPU_METHODS)
    return meter


class CandidateMeters:
    """Meters by candidate, created on first use, one per device; thread-safe.

    Args:
        devices: candidate name -> ``"cuda:N"``, ``"cpu"``, another local device label, or
            None for a remote candidate.
        meter: a meter for every local candidate (the caller owns and closes it).
    """

    def __init__(self, devices: Mapping[str, str | None], meter: EnergyMeter | None = None) -> None:
        self.devices = dict(devices)
        self._given = meter
        self._null = NullMeter()
        self._lock = threading.Lock()
        self._by_device: dict[str, EnergyMeter] = {}

    def meter_for(self, name: str) -> EnergyMeter:
        """The meter of candidate ``name`` (created here for its device on first use)."""
        device = self.devices[name]
        if device is None:
            return self._null
        if self._given is not None:
            return self._given
        key = device if device.startswith("cuda") else "cpu"
        meter = self._by_device.get(key)
        if meter is None:
            with self._lock:
                meter = self._by_device.get(key)
                if meter is None:
                    meter = self._by_device[key] = _build_meter(key)
        return meter

    def methods(self) -> dict[str, str]:
        """Candidate name -> the method of its meter (creates the meters not yet used)."""
        return {name: self.meter_for(name).method for name in self.devices}

    def adopt(self, other: CandidateMeters) -> None:
        """Take over the meters ``other`` created (when the router's settings change, not its devices)."""
        with other._lock:
            owned, other._by_device = other._by_device, {}
        with self._lock:
            for key, meter in owned.items():
                if key in self._by_device:
                    meter.close()
                else:
                    self._by_device[key] = meter

    def close(self) -> None:
        """Close the meters created here (a meter given to the router is left to its owner)."""
        with self._lock:
            owned, self._by_device = list(self._by_device.values()), {}
        for meter in owned:
            meter.close()


class MeterWindow:
    """One attempt's measurement window; a failing meter yields a time-only reading instead of an error.

    Example:
        >>> window = MeterWindow(meter)
        >>> ...  # run the model
        >>> reading = window.end()
    """

    __slots__ = ("_handle", "_meter", "_start_s", "error")

    def __init__(self, meter: EnergyMeter) -> None:
        self._meter = meter
        self.error: BaseException | None = None
        """What the meter raised, if it did."""
        self._start_s = time.perf_counter()
        self._handle: Any = None
        try:
            self._handle = meter.begin()
        except Exception as err:  # a broken meter (dead NVML thread, closed meter) must not fail the call
            self.error = err

    def end(self) -> EnergyReading:
        """Close the window: the meter's reading, or method ``"none"`` flagged ``meter_failed``."""
        if self.error is None:
            try:
                return self._meter.end(self._handle)
            except Exception as err:  # see __init__
                self.error = err
        return EnergyReading(
            energy_j=None,
            energy_j_by_device={},
            runtime_s=time.perf_counter() - self._start_s,
            method="none",
            is_estimate=False,
            flags=(FLAG_METER_FAILED,),
        )
