"""The router's meters: one per device its candidates run on, and windows that never fail a call.

Which meter a candidate gets (:meth:`CandidateMeters.meter_for`):

* a meter passed to the router (``meter=``) wins for every local candidate;
* a local pipeline on ``cuda:N`` (or split over several GPUs): an NVML meter for those GPUs only
  (``nvml_counter``, else ``nvml_poll``; without NVML nothing is measured,
  method ``"none"``: the CPU's figures would not be the GPU's joules);
* a local pipeline on the CPU, or a local model whose device is unknown:
  RAPL, else the CPU-time estimate;
* a remote candidate: :class:`~langchain_energyrouter.energy.NullMeter` (time only).

Every window opened here also registers with the process's :class:`DeviceWindows`, keyed by
physical device (a GPU by its label ``cuda:N``, every CPU-side meter as the one host), so windows
of different meters see each other: two routers in one process, a ``model_copy`` of a router, the
agent middleware's router, or NVML meters over ``cuda:0`` and ``cuda:0,cuda:1`` all flag the
readings that shared a device ``overlapped``. A meter that raises in ``begin`` or ``end`` degrades the
answer to a reading without joules (method ``"none"``, flag ``"meter_failed"``)
instead of failing the user's request (:class:`MeterWindow`).
"""

from __future__ import annotations

import dataclasses
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

from langchain_energyrouter.energy.base import FLAG_OVERLAPPED, EnergyMeter, EnergyReading
from langchain_energyrouter.energy.null import NullMeter

FLAG_METER_FAILED = "meter_failed"
"""The meter raised; the reading carries time only (method ``"none"``)."""

GPU_METHODS = ("nvml_counter", "nvml_poll", "none")
"""Meters tried, in order, for a candidate on a CUDA device."""

CPU_METHODS = ("rapl", "estimate")
"""Meters tried, in order, for a candidate on the CPU (or on a local device the router cannot tell)."""

HOST_DEVICE = "host"
"""The key every CPU-side device (RAPL package, the process's CPU time) shares in :class:`DeviceWindows`."""

__all__ = [
    "CPU_METHODS",
    "FLAG_METER_FAILED",
    "GPU_METHODS",
    "HOST_DEVICE",
    "CandidateMeters",
    "DeviceWindows",
    "MeterWindow",
    "physical_devices",
]


def physical_devices(meter: EnergyMeter) -> tuple[str, ...]:
    """The physical devices ``meter`` measures: GPU labels as they are, CPU-side ones as :data:`HOST_DEVICE`.

    A meter that measures nothing locally (method ``"none"``) or does not say what it measures has none.
    """
    if meter.method == "none":
        return ()
    labels: Iterable[Any] = getattr(meter, "devices", None) or ()
    keys = {str(label) if str(label).startswith(("cuda", "GPU-")) else HOST_DEVICE for label in labels}
    return tuple(sorted(keys))


class _Span:
    """One window's place in :class:`DeviceWindows` (weakly held: a window dropped unended is forgotten)."""

    __slots__ = ("__weakref__", "devices", "overlapped")

    def __init__(self, devices: tuple[str, ...]) -> None:
        self.devices = devices
        self.overlapped = False


class DeviceWindows:
    """Which metered windows are open on which physical device, across every meter and router; thread-safe.

    A meter's own tracker sees only that meter's windows; this sees all of them, so readings of
    meters that share a device are flagged ``overlapped`` whoever created the meters. Windows are
    held weakly: one its caller dropped without ending stops counting once collected.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, weakref.WeakSet[_Span]] = {}

    def open(self, devices: tuple[str, ...]) -> _Span:
        """Register a window on ``devices``; it and every window open there now are marked overlapped."""
        span = _Span(devices)
        with self._lock:
            for device in devices:
                others = self._open.setdefault(device, weakref.WeakSet())
                for other in others:
                    other.overlapped = span.overlapped = True
                others.add(span)
        return span

    def close(self, span: _Span) -> bool:
        """Unregister ``span``; whether another window shared one of its devices at any moment of it."""
        with self._lock:
            for device in span.devices:
                windows = self._open.get(device)
                if windows is not None:
                    windows.discard(span)
            return span.overlapped

    def open_count(self, device: str) -> int:
        """Windows open on ``device`` now."""
        with self._lock:
            return len(self._open.get(device, ()))


PROCESS_WINDOWS = DeviceWindows()
"""The process's one :class:`DeviceWindows`. A module-level instance on purpose: energy is per physical
device, and every meter and router in the process shares the devices."""


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

    __slots__ = ("_devices", "_handle", "_meter", "_span", "_start_s", "error")

    def __init__(self, meter: EnergyMeter, devices: DeviceWindows | None = None) -> None:
        self._meter = meter
        self._devices = PROCESS_WINDOWS if devices is None else devices
        self.error: BaseException | None = None
        """What the meter raised, if it did."""
        self._span = self._devices.open(physical_devices(meter))
        self._start_s = time.perf_counter()
        self._handle: Any = None
        try:
            self._handle = meter.begin()
        except Exception as err:  # a broken meter (dead NVML thread, closed meter) must not fail the call
            self.error = err

    def end(self) -> EnergyReading:
        """Close the window: the meter's reading (flagged ``overlapped`` when another window, of any meter,
        shared a device), or method ``"none"`` flagged ``meter_failed``."""
        reading = self._end()
        overlapped = self._devices.close(self._span)
        if overlapped and reading.energy_j is not None and FLAG_OVERLAPPED not in reading.flags:
            reading = dataclasses.replace(reading, flags=(*reading.flags, FLAG_OVERLAPPED))
        return reading

    def _end(self) -> EnergyReading:
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
