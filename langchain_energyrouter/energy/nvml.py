"""NVIDIA GPU energy through NVML (the ``nvidia-ml-py`` package, module ``pynvml``).

Two meters:

* :class:`NvmlCounterMeter` (method ``"nvml_counter"``, preferred): the
  difference of ``nvmlDeviceGetTotalEnergyConsumption`` (millijoules since the
  driver loaded; Volta and newer). The counter updates about every 100 ms, so
  shorter windows are flagged ``below_resolution``, and a counter that reads
  lower at the end than at the start is flagged ``counter_went_backwards``.
* :class:`NvmlPollMeter` (method ``"nvml_poll"``, for GPUs without the
  counter): ONE daemon thread samples instantaneous power
  (``NVML_FI_DEV_POWER_INSTANT`` through ``nvmlDeviceGetFieldValues``, else
  ``nvmlDeviceGetPowerUsage``, flagged ``power_averaged``) every
  ``interval_s`` (50-100 ms recommended) and integrates it with the trapezoid
  rule; ``begin``/``end`` also take a sample so windows start and end on time.

Both report *total* device energy, idle power of the GPU included (no baseline
is subtracted), and each meter calls ``nvmlInit`` once and ``nvmlShutdown`` in
:meth:`close`. ``pynvml`` is imported inside functions only.

Device mapping: an ``int`` device (or ``"cuda:N"``) is a CUDA/torch index, so
it is translated through ``CUDA_VISIBLE_DEVICES`` the way CUDA does: entries
``GPU-<uuid>`` (prefixes allowed) are matched by UUID, PCI bus ids
(``0000:3b:00.0``) by bus id, and plain numbers are NVML indices (NVML numbers
GPUs in PCI bus order, which is what CUDA uses with
``CUDA_DEVICE_ORDER=PCI_BUS_ID``; when torch has already initialised CUDA,
the device UUID torch reports is used instead). MIG slices (``MIG-...``
entries, or a GPU with MIG mode enabled) are refused with a
:class:`~langchain_energyrouter.errors.MeterError`: NVML energy is per
physical GPU and cannot be attributed to a slice.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

from langchain_energyrouter.energy.base import (
    FLAG_POWER_AVERAGED,
    CumulativeMeter,
    EnergyReading,
    WindowTracker,
)
from langchain_energyrouter.errors import MeterError, missing_extra

NVML_COUNTER_UPDATE_PERIOD_S = 0.1
"""Update period of NVML's energy counter in seconds (reported as 10-100 ms)."""

DEFAULT_POLL_INTERVAL_S = 0.1
"""Default power sampling interval of :class:`NvmlPollMeter` in seconds."""

_REASONS = {
    "NVMLError_LibraryNotFound": "no library",
    "NVMLError_DriverNotLoaded": "no driver",
    "NVMLError_NotSupported": "not supported",
    "NVMLError_FunctionNotFound": "not supported",
    "NVMLError_NoPermission": "no permission",
}

DeviceSpec = int | str
"""A CUDA index (``0``, ``"cuda:0"``), ``"GPU-<uuid>"`` or a PCI bus id."""


def import_pynvml() -> ModuleType:
    """Import ``pynvml`` or raise the missing-extra error."""
    try:
        import pynvml
    except ImportError as err:
        raise missing_extra("pynvml", "nvml", "NVML energy metering") from err
    module: ModuleType = pynvml
    return module


def nvml_reason(err: BaseException) -> str:
    """Describe an NVML error as ``"<category>: <class>: <message>"``.

    The category is one of ``no library``, ``no driver``, ``not supported``,
    ``no permission`` or ``error``.
    """
    name = type(err).__name__
    return f"{_REASONS.get(name, 'error')}: {name}: {err}"


def cuda_visible_entries(environ: Mapping[str, str]) -> list[str] | None:
    """Parse ``CUDA_VISIBLE_DEVICES`` as CUDA does; ``None`` when it is unset.

    Parsing stops at the first empty or negative entry (``"-1"`` hides all).
    """
    raw = environ.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return None
    entries: list[str] = []
    for token in raw.split(","):
        entry = token.strip()
        if not entry or entry.startswith("-"):
            break
        entries.append(entry)
    return entries


def _torch_uuid(index: int) -> str | None:
    """UUID of CUDA device ``index`` as torch sees it, if torch already initialised CUDA."""
    torch = sys.modules.get("torch")  # never import torch just for this
    try:
        if torch is None or not torch.cuda.is_initialized():
            return None
        return "GPU-" + str(torch.cuda.get_device_properties(index).uuid)
    except Exception:
        return None


def _as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _handle_for_entry(pynvml: ModuleType, entry: str, label: str) -> Any:
    """NVML handle for one ``CUDA_VISIBLE_DEVICES``-style entry."""
    if entry.startswith("MIG-"):
        msg = (
            f"not supported: {label} is the MIG slice {entry!r}. NVML energy is per physical GPU and "
            "cannot be attributed to a MIG slice; meter the whole GPU or use method 'estimate'."
        )
        raise MeterError(msg)
    if entry.startswith("GPU-"):
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            if _as_text(pynvml.nvmlDeviceGetUUID(handle)).startswith(entry):
                return handle
        msg = f"not supported: no GPU with UUID {entry!r} (for {label}) is visible to NVML."
        raise MeterError(msg)
    if ":" in entry:
        return pynvml.nvmlDeviceGetHandleByPciBusId(entry)
    if entry.isdigit():
        return pynvml.nvmlDeviceGetHandleByIndex(int(entry))
    msg = f"not supported: cannot map device entry {entry!r} (for {label}) to an NVML device."
    raise MeterError(msg)


def _refuse_mig(pynvml: ModuleType, handle: Any, label: str) -> None:
    try:
        current_mode, _pending_mode = pynvml.nvmlDeviceGetMigMode(handle)
    except pynvml.NVMLError:  # NotSupported: a GPU without MIG
        return
    if current_mode == pynvml.NVML_DEVICE_MIG_ENABLE:
        msg = (
            f"not supported: {label} has MIG mode enabled. NVML energy covers the whole GPU and cannot be "
            "attributed to one MIG slice; disable MIG or use method 'estimate'."
        )
        raise MeterError(msg)


def resolve_devices(
    pynvml: ModuleType,
    devices: Sequence[DeviceSpec] | None,
    environ: Mapping[str, str],
) -> dict[str, Any]:
    """Map CUDA device indices or identifiers to NVML handles.

    Args:
        pynvml: the initialised NVML module.
        devices: CUDA indices (``0`` or ``"cuda:0"``), ``"GPU-<uuid>"`` or PCI
            bus ids; ``None`` means every CUDA-visible GPU.
        environ: the environment holding ``CUDA_VISIBLE_DEVICES``.

    Returns:
        Device label (``"cuda:N"`` or the identifier given) -> NVML handle.

    Raises:
        MeterError: a device is not visible, is a MIG slice or is in MIG mode.
    """
    visible = cuda_visible_entries(environ)
    if devices is None:
        count = len(visible) if visible is not None else pynvml.nvmlDeviceGetCount()
        devices = list(range(count))
        if not devices:
            msg = f"not supported: no GPU is visible (CUDA_VISIBLE_DEVICES={environ.get('CUDA_VISIBLE_DEVICES')!r})."
            raise MeterError(msg)
    handles: dict[str, Any] = {}
    numeric_entries = False
    for spec in devices:
        index: int | None = None
        if isinstance(spec, int):
            index = spec
        elif spec.startswith("cuda:") and spec[5:].isdigit():
            index = int(spec[5:])
        if index is not None:
            label = f"cuda:{index}"
            entry = _torch_uuid(index)
            if entry is None:
                if visible is None:
                    entry = str(index)
                elif index < len(visible):
                    entry = visible[index]
                else:
                    msg = (
                        f"not supported: {label} is not visible: CUDA_VISIBLE_DEVICES="
                        f"{environ.get('CUDA_VISIBLE_DEVICES')!r} exposes {len(visible)} device(s)."
                    )
                    raise MeterError(msg)
                numeric_entries = numeric_entries or entry.isdigit()
        else:
            label = entry = str(spec)
        try:
            handle = _handle_for_entry(pynvml, entry, label)
        except pynvml.NVMLError as err:
            msg = f"{nvml_reason(err)} (looking up {label} as {entry!r})"
            raise MeterError(msg) from err
        _refuse_mig(pynvml, handle, label)
        handles[label] = handle
    if numeric_entries and environ.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID" and pynvml.nvmlDeviceGetCount() > 1:
        # CUDA's default FASTEST_FIRST order equals NVML's PCI order only among identical GPUs
        names = {
            _as_text(pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i)))
            for i in range(pynvml.nvmlDeviceGetCount())
        }
        if len(names) > 1:
            warnings.warn(
                f"GPUs of different models ({sorted(names)}) and CUDA_DEVICE_ORDER is not PCI_BUS_ID: CUDA "
                "may number them differently from NVML. Set CUDA_DEVICE_ORDER=PCI_BUS_ID or pass GPU UUIDs.",
                RuntimeWarning,
                stacklevel=3,
            )
    return handles


class _NvmlSession:
    """One ``nvmlInit`` ... ``nvmlShutdown`` and the resolved device handles."""

    def __init__(self, devices: Sequence[DeviceSpec] | None, environ: Mapping[str, str] | None) -> None:
        pynvml = import_pynvml()
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as err:
            msg = f"{nvml_reason(err)} (nvmlInit failed)"
            raise MeterError(msg) from err
        self.pynvml = pynvml
        self._lock = threading.Lock()
        self._open = True
        try:
            self.handles = resolve_devices(pynvml, devices, os.environ if environ is None else environ)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        with self._lock:
            if not self._open:
                return
            self._open = False
        try:
            self.pynvml.nvmlShutdown()
        except self.pynvml.NVMLError:
            pass  # nothing useful to do about a failed shutdown


class NvmlCounterMeter(CumulativeMeter):
    """GPU energy from NVML's total-energy counter (millijoules).

    Args:
        devices: CUDA indices or identifiers (see :func:`resolve_devices`);
            ``None`` meters every visible GPU.
        update_period_s: counter update period in seconds; shorter windows are
            flagged ``below_resolution``.
        tracker: shared overlap tracker.
        clock: monotonic clock in seconds.
        environ: environment to read ``CUDA_VISIBLE_DEVICES`` from (default
            ``os.environ``).

    Raises:
        MeterError: NVML is unavailable or a device lacks the counter; the
            message starts with the reason (``no library``, ``no driver``,
            ``not supported``, ``no permission``).
        MissingExtraError: ``nvidia-ml-py`` is not installed.
    """

    method = "nvml_counter"
    is_estimate = False

    def __init__(
        self,
        devices: Sequence[DeviceSpec] | None = None,
        *,
        update_period_s: float = NVML_COUNTER_UPDATE_PERIOD_S,
        tracker: WindowTracker | None = None,
        clock: Callable[[], float] = time.perf_counter,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """Initialise NVML and check every device has the energy counter."""
        self._session = _NvmlSession(devices, environ)
        try:
            self._read_j()
        except BaseException:
            self._session.close()
            raise
        super().__init__(tuple(self._session.handles), update_period_s=update_period_s, tracker=tracker, clock=clock)

    def _read_j(self) -> dict[str, float]:
        pynvml = self._session.pynvml
        try:
            return {
                label: float(pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)) / 1000.0
                for label, handle in self._session.handles.items()
            }
        except pynvml.NVMLError as err:
            msg = f"{nvml_reason(err)} (nvmlDeviceGetTotalEnergyConsumption)"
            raise MeterError(msg) from err

    def close(self) -> None:
        """Shut NVML down for this meter; idempotent."""
        super().close()
        self._session.close()


class NvmlPollMeter(CumulativeMeter):
    """GPU energy by integrating sampled power (trapezoid rule) in one daemon thread.

    Args:
        devices: as for :class:`NvmlCounterMeter`.
        interval_s: sampling interval in seconds (50-100 ms recommended);
            windows shorter than this are flagged ``below_resolution``.
        tracker: shared overlap tracker.
        clock: monotonic clock in seconds.
        environ: environment to read ``CUDA_VISIBLE_DEVICES`` from.

    Raises:
        MeterError: NVML is unavailable or no power reading is supported.
        MissingExtraError: ``nvidia-ml-py`` is not installed.
    """

    method = "nvml_poll"
    is_estimate = False

    def __init__(
        self,
        devices: Sequence[DeviceSpec] | None = None,
        *,
        interval_s: float = DEFAULT_POLL_INTERVAL_S,
        tracker: WindowTracker | None = None,
        clock: Callable[[], float] = time.perf_counter,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """Initialise NVML, pick a power source per device and start the sampler."""
        if not interval_s > 0:
            msg = f"interval_s must be a positive number of seconds, got {interval_s!r}."
            raise MeterError(msg)
        self._session = _NvmlSession(devices, environ)
        self._sample_lock = threading.Lock()
        self._stop = threading.Event()
        self._error: MeterError | None = None
        self.samples = 0
        try:
            self._instant = {label: self._probe_instant(h) for label, h in self._session.handles.items()}
            super().__init__(tuple(self._session.handles), update_period_s=interval_s, tracker=tracker, clock=clock)
            now_s = self._clock()
            self._last = {label: (now_s, self._power_w(label)) for label in self.devices}
        except BaseException:
            self._session.close()
            raise
        self._energy_j = dict.fromkeys(self.devices, 0.0)
        self.interval_s = float(interval_s)
        self._thread = threading.Thread(target=self._run, name="energyrouter-nvml-poll", daemon=True)
        self._thread.start()

    def _instant_mw(self, handle: Any) -> float:
        pynvml = self._session.pynvml
        value = pynvml.nvmlDeviceGetFieldValues(handle, [pynvml.NVML_FI_DEV_POWER_INSTANT])[0]
        if value.nvmlReturn != pynvml.NVML_SUCCESS:
            raise pynvml.NVMLError(value.nvmlReturn)
        return float(value.value.uiVal)

    def _probe_instant(self, handle: Any) -> bool:
        """Whether instant power works; else check the averaged power does."""
        pynvml = self._session.pynvml
        try:
            self._instant_mw(handle)
        except pynvml.NVMLError:
            pass
        else:
            return True
        try:
            pynvml.nvmlDeviceGetPowerUsage(handle)
        except pynvml.NVMLError as err:
            msg = f"{nvml_reason(err)} (neither NVML_FI_DEV_POWER_INSTANT nor nvmlDeviceGetPowerUsage)"
            raise MeterError(msg) from err
        return False

    def _power_w(self, label: str) -> float:
        handle = self._session.handles[label]
        pynvml = self._session.pynvml
        try:
            if self._instant[label]:
                return self._instant_mw(handle) / 1000.0
            return float(pynvml.nvmlDeviceGetPowerUsage(handle)) / 1000.0
        except pynvml.NVMLError as err:
            msg = f"{nvml_reason(err)} (reading power of {label})"
            raise MeterError(msg) from err

    def sample(self) -> None:
        """Take one power sample per device and integrate up to now (thread-safe)."""
        with self._sample_lock:
            if self._error is not None:
                raise self._error
            now_s = self._clock()
            for label in self.devices:
                power_w = self._power_w(label)
                last_s, last_w = self._last[label]
                self._energy_j[label] += 0.5 * (last_w + power_w) * max(0.0, now_s - last_s)
                self._last[label] = (now_s, power_w)
            self.samples += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sample()
            except MeterError as err:
                self._error = err  # surfaced by the next begin()/end()
                return

    def _read_j(self) -> dict[str, float]:
        self.sample()
        with self._sample_lock:
            return dict(self._energy_j)

    def _reading(self, by_device: dict[str, float], runtime_s: float, flags: tuple[str, ...]) -> EnergyReading:
        if not all(self._instant.values()):
            flags = (*flags, FLAG_POWER_AVERAGED)
        return super()._reading(by_device, runtime_s, flags)

    @property
    def running(self) -> bool:
        """Whether the sampling thread is alive."""
        return self._thread.is_alive()

    def close(self) -> None:
        """Stop and join the sampling thread, then shut NVML down; idempotent."""
        super().close()
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        self._session.close()


__all__ = [
    "DEFAULT_POLL_INTERVAL_S",
    "NVML_COUNTER_UPDATE_PERIOD_S",
    "NvmlCounterMeter",
    "NvmlPollMeter",
    "cuda_visible_entries",
    "import_pynvml",
    "nvml_reason",
    "resolve_devices",
]
