"""What every energy meter returns, and the window logic they all share.

A meter measures *windows*: ``handle = meter.begin()`` ... ``meter.end(handle)``
returns one :class:`EnergyReading`. Several windows may be open at once, from
several threads. Every concrete meter reads a cumulative per-device energy
figure in joules (a hardware counter, an integral of sampled power, or an
estimate); :class:`CumulativeMeter` turns two such reads into a reading, so
timing, overlap tracking and below-resolution flagging live here only.

Overlap policy
--------------
Hardware energy is per *device*, not per process or per call. When two windows
on one device are open at the same time (a batch, concurrent agents), each
window is given the **full device delta** over its own span and flagged
``"overlapped"``. Energy is *not* apportioned between the windows, so summing
overlapped readings double-counts; a consumer that wants per-call shares must
serialise calls per device or apportion itself (e.g. by tokens). A window is
flagged when any other window on any of its devices was open at any moment of
its span, including windows opened by another meter that shares the same
:class:`WindowTracker`.

Flags
-----
``below_resolution``
    The window was shorter than the meter's update period, or the counter did
    not advance at all: the figure is not a confident number (0 J least of all).
``overlapped``
    Another window on the same device was open during this one (see above).
``counter_went_backwards``
    A counter read lower at the end than at the start with no known wrap range
    (driver reload, GPU reset). That device's delta is reported as 0 J.
``counter_wrapped``
    A counter with a known range (RAPL) wrapped once and was corrected.
``power_averaged``
    ``nvml_poll`` fell back to ``nvmlDeviceGetPowerUsage``, a 1 s average on
    Ampere and newer, which smooths (underestimates) short bursts.
``not_measured_locally``
    Method ``"none"``: only time was measured (remote endpoints).
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

from langchain_energyrouter.errors import MeterError

METHODS: tuple[str, ...] = ("nvml_counter", "nvml_poll", "rapl", "estimate", "none")
"""Every value :attr:`EnergyReading.method` may take, best first."""

_MeterT = TypeVar("_MeterT", bound="CumulativeMeter")

ENERGY_EVENT = "energyrouter_energy"
"""Name of the LangChain custom event that delivers a model run's energy metadata after its ``on_llm_end``
(the agent middleware attaches it once the candidate has answered); data: ``{"run_id": str, "message":
AIMessage}``. :class:`~langchain_energyrouter.callbacks.EnergyCallbackHandler` records it as the run's."""

FLAG_BELOW_RESOLUTION = "below_resolution"
FLAG_OVERLAPPED = "overlapped"
FLAG_COUNTER_WENT_BACKWARDS = "counter_went_backwards"
FLAG_COUNTER_WRAPPED = "counter_wrapped"
FLAG_NOT_MEASURED_LOCALLY = "not_measured_locally"
FLAG_POWER_AVERAGED = "power_averaged"


@dataclass(frozen=True)
class EnergyReading:
    """The energy and time one window used, and how they were obtained.

    Attributes:
        energy_j: total energy over ``devices`` in joules; ``None`` when
            ``method`` is ``"none"`` (nothing was measured locally).
        energy_j_by_device: device label -> joules.
        runtime_s: wall-clock length of the window in seconds.
        method: one of :data:`METHODS`.
        is_estimate: ``True`` when the joules are modelled, not measured.
        devices: labels of the devices measured, e.g. ``("cuda:0",)``.
        flags: caveats, see the module docstring.
    """

    energy_j: float | None
    energy_j_by_device: dict[str, float]
    runtime_s: float
    method: str
    is_estimate: bool
    devices: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            msg = f"Unknown energy method {self.method!r}; expected one of {list(METHODS)}."
            raise MeterError(msg)
        if (self.energy_j is None) != (self.method == "none"):
            msg = (
                f"energy_j={self.energy_j!r} does not fit method {self.method!r}: "
                "energy_j is None exactly when the method is 'none'."
            )
            raise MeterError(msg)

    def as_metadata(self) -> dict[str, Any]:
        """Return a JSON-able dict for ``AIMessage.response_metadata["energy"]``.

        Keys: ``energy_j``, ``runtime_s``, ``method``, ``is_estimate``,
        ``devices`` (list), ``flags`` (list), ``energy_j_by_device`` (dict).
        """
        return {
            "energy_j": self.energy_j,
            "runtime_s": self.runtime_s,
            "method": self.method,
            "is_estimate": self.is_estimate,
            "devices": list(self.devices),
            "flags": list(self.flags),
            "energy_j_by_device": dict(self.energy_j_by_device),
        }

    @classmethod
    def from_metadata(cls, data: Mapping[str, Any]) -> EnergyReading:
        """Rebuild a reading from :meth:`as_metadata` output.

        Raises:
            MeterError: a key is missing or a value has the wrong type.
        """
        try:
            energy_j = data["energy_j"]
            return cls(
                energy_j=None if energy_j is None else float(energy_j),
                energy_j_by_device={str(k): float(v) for k, v in dict(data.get("energy_j_by_device") or {}).items()},
                runtime_s=float(data["runtime_s"]),
                method=str(data["method"]),
                is_estimate=bool(data["is_estimate"]),
                devices=tuple(str(d) for d in data.get("devices") or ()),
                flags=tuple(str(f) for f in data.get("flags") or ()),
            )
        except (KeyError, TypeError, ValueError) as err:
            msg = f"Energy metadata {dict(data)!r} is malformed ({err!r}); expected EnergyReading.as_metadata() output."
            raise MeterError(msg) from err


@runtime_checkable
class EnergyMeter(Protocol):
    """Measures the energy of windows: ``end(begin())`` -> :class:`EnergyReading`."""

    method: str

    def begin(self) -> object:
        """Open a window and return its opaque handle (thread-safe)."""
        ...

    def end(self, handle: object) -> EnergyReading:
        """Close the window ``handle`` and return what it used (thread-safe)."""
        ...

    def close(self) -> None:
        """Release NVML, threads and files; idempotent."""
        ...


class WindowTracker:
    """Tracks which windows are open on which device, to flag overlaps.

    One tracker per meter by default; pass one tracker to several meters that
    measure the same devices so their windows see each other.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, set[_Window]] = {}

    def open(self, window: _Window) -> None:
        """Register ``window`` on its devices and mark any overlap, both ways."""
        with self._lock:
            for device in window.devices:
                others = self._open.setdefault(device, set())
                if others:
                    window.overlapped = True
                    for other in others:
                        other.overlapped = True
                others.add(window)

    def close(self, window: _Window) -> bool:
        """Unregister ``window``; return whether it overlapped another window."""
        with self._lock:
            for device in window.devices:
                self._open.get(device, set()).discard(window)
            return window.overlapped

    def open_count(self, device: str) -> int:
        """Number of windows open on ``device`` now."""
        with self._lock:
            return len(self._open.get(device, ()))


class _Window:
    """The opaque handle :meth:`CumulativeMeter.begin` returns."""

    __slots__ = ("closed", "devices", "meter_id", "overlapped", "start_j", "start_s")

    def __init__(self, meter_id: int, devices: tuple[str, ...], start_s: float, start_j: dict[str, float]) -> None:
        self.meter_id = meter_id
        self.devices = devices
        self.start_s = start_s
        self.start_j = start_j
        self.overlapped = False
        self.closed = False


class CumulativeMeter(ABC):
    """Base of every meter: subtract two reads of a cumulative joule figure.

    Subclasses set :attr:`method`, :attr:`is_estimate`, :attr:`devices` and
    :attr:`update_period_s` and implement :meth:`_read_j`; a counter that can
    wrap overrides :meth:`_delta_j`. Meters are context managers.

    Attributes:
        method: one of :data:`METHODS`.
        is_estimate: whether readings are modelled rather than measured.
        devices: labels of the devices this meter measures.
        update_period_s: how often the underlying figure changes, in seconds;
            shorter windows are flagged ``below_resolution``.
        unavailable: method -> why it was not used, filled by
            :func:`~langchain_energyrouter.energy.select_meter`.
    """

    method: str = "none"
    is_estimate: bool = False

    def __init__(
        self,
        devices: Iterable[str],
        *,
        update_period_s: float,
        tracker: WindowTracker | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        """Set up shared window state.

        Args:
            devices: labels of the measured devices.
            update_period_s: update period of the underlying figure in seconds.
            tracker: share one to detect overlaps across meters.
            clock: monotonic clock in seconds (injectable for tests).
        """
        self.devices: tuple[str, ...] = tuple(devices)
        self.update_period_s = float(update_period_s)
        self.unavailable: dict[str, str] = {}
        self._tracker = tracker if tracker is not None else WindowTracker()
        self._clock = clock
        self._closed = False

    @abstractmethod
    def _read_j(self) -> dict[str, float]:
        """Read the cumulative energy of every device in joules (thread-safe)."""

    def _delta_j(self, device: str, start_j: float, end_j: float) -> tuple[float, tuple[str, ...]]:
        """Energy between two reads of ``device`` in joules, and any flags.

        The default treats a decrease as a reset: 0 J, ``counter_went_backwards``.
        """
        if end_j < start_j:
            return 0.0, (FLAG_COUNTER_WENT_BACKWARDS,)
        return end_j - start_j, ()

    def begin(self) -> object:
        """Open a window; return its opaque handle.

        Raises:
            MeterError: the meter is closed.
        """
        if self._closed:
            msg = f"{type(self).__name__} is closed; create a new meter to measure again."
            raise MeterError(msg)
        start_j = self._read_j()
        window = _Window(id(self), self.devices, self._clock(), start_j)
        self._tracker.open(window)
        return window

    def end(self, handle: object) -> EnergyReading:
        """Close the window ``handle`` and return what it used.

        Raises:
            MeterError: ``handle`` is not an open window of this meter.
        """
        if not isinstance(handle, _Window) or handle.meter_id != id(self):
            msg = f"{handle!r} is not a window opened by this {type(self).__name__}; pass what begin() returned."
            raise MeterError(msg)
        if handle.closed:
            msg = "This energy window was already ended; call begin() again for a new window."
            raise MeterError(msg)
        if self._closed:
            msg = f"{type(self).__name__} was closed while a window was open; no reading is possible."
            raise MeterError(msg)
        end_j = self._read_j()
        end_s = self._clock()
        handle.closed = True
        overlapped = self._tracker.close(handle)
        runtime_s = max(0.0, end_s - handle.start_s)

        flags: list[str] = []
        by_device: dict[str, float] = {}
        for device in self.devices:
            delta_j, device_flags = self._delta_j(device, handle.start_j[device], end_j[device])
            by_device[device] = delta_j
            flags.extend(f for f in device_flags if f not in flags)
        if self.method != "none" and (
            runtime_s < self.update_period_s or not any(end_j[d] != handle.start_j[d] for d in self.devices)
        ):
            flags.append(FLAG_BELOW_RESOLUTION)
        if overlapped:
            flags.append(FLAG_OVERLAPPED)
        return self._reading(by_device, runtime_s, tuple(flags))

    def _reading(self, by_device: dict[str, float], runtime_s: float, flags: tuple[str, ...]) -> EnergyReading:
        return EnergyReading(
            energy_j=sum(by_device.values()),
            energy_j_by_device=by_device,
            runtime_s=runtime_s,
            method=self.method,
            is_estimate=self.is_estimate,
            devices=self.devices,
            flags=flags,
        )

    def close(self) -> None:
        """Release resources; further :meth:`begin` calls raise. Idempotent."""
        self._closed = True

    def __enter__(self: _MeterT) -> _MeterT:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(method={self.method!r}, devices={list(self.devices)!r})"


__all__ = [
    "ENERGY_EVENT",
    "FLAG_BELOW_RESOLUTION",
    "FLAG_COUNTER_WENT_BACKWARDS",
    "FLAG_COUNTER_WRAPPED",
    "FLAG_NOT_MEASURED_LOCALLY",
    "FLAG_OVERLAPPED",
    "FLAG_POWER_AVERAGED",
    "METHODS",
    "CumulativeMeter",
    "EnergyMeter",
    "EnergyReading",
    "WindowTracker",
]
