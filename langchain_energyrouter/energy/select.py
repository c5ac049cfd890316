"""Choosing a meter: the registry of meter classes, best first, and the first that works here."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_energyrouter.energy.base import METHODS, CumulativeMeter
from langchain_energyrouter.energy.estimate import DEFAULT_WATTS_PER_THREAD_W, EstimateMeter
from langchain_energyrouter.energy.null import NullMeter
from langchain_energyrouter.energy.nvml import DeviceSpec, NvmlCounterMeter, NvmlPollMeter
from langchain_energyrouter.energy.rapl import DEFAULT_POWERCAP_ROOT, RaplMeter
from langchain_energyrouter.errors import MeterError

__all__ = ["METERS", "default_meter", "get_meter", "select_meter"]

METERS: dict[str, type[CumulativeMeter]] = {
    "nvml_counter": NvmlCounterMeter,
    "nvml_poll": NvmlPollMeter,
    "rapl": RaplMeter,
    "estimate": EstimateMeter,
    "none": NullMeter,
}
"""Method name -> meter class, best first."""


def get_meter(name: str, **kwargs: Any) -> CumulativeMeter:
    """Construct the meter registered as ``name`` with ``kwargs``.

    Raises:
        MeterError: ``name`` is unknown, or the meter is unavailable here.
    """
    try:
        cls = METERS[name]
    except KeyError:
        msg = f"Unknown energy meter {name!r}. Known meters: {list(METERS)}."
        raise MeterError(msg) from None
    return cls(**kwargs)


def select_meter(
    *,
    devices: Sequence[DeviceSpec] | None = None,
    powercap_root: str | Path = DEFAULT_POWERCAP_ROOT,
    watts_per_thread_w: float = DEFAULT_WATTS_PER_THREAD_W,
    methods: Sequence[str] = METHODS,
) -> tuple[CumulativeMeter, list[tuple[str, str]]]:
    """Build the first meter in ``methods`` that works here.

    Args:
        devices: GPUs for the NVML meters (``None``: every visible GPU).
        powercap_root: sysfs powercap directory for RAPL.
        watts_per_thread_w: watts per busy CPU thread for ``estimate``.
        methods: the order to try; must end with a meter that cannot fail
            (``"estimate"`` or ``"none"``) to never raise.

    Returns:
        The meter, and ``(method, reason)`` for each better method skipped,
        the reason starting with ``no library``, ``no driver``, ``not
        supported`` or ``no permission``.

    Raises:
        MeterError: no method in ``methods`` worked.
    """
    options: dict[str, dict[str, Any]] = {
        "nvml_counter": {"devices": devices},
        "nvml_poll": {"devices": devices},
        "rapl": {"root": powercap_root},
        "estimate": {"watts_per_thread_w": watts_per_thread_w},
        "none": {},
    }
    skipped: list[tuple[str, str]] = []
    for method in methods:
        try:
            meter = get_meter(method, **options.get(method, {}))
        except MeterError as err:
            skipped.append((method, str(err)))
        except ImportError as err:  # MissingExtraError: pynvml not installed
            skipped.append((method, f"no library: {err}"))
        else:
            meter.unavailable = dict(skipped)
            return meter, skipped
    msg = f"No energy meter among {list(methods)} is available: " + "; ".join(f"{m}: {r}" for m, r in skipped)
    raise MeterError(msg)


def default_meter(
    *,
    devices: Sequence[DeviceSpec] | None = None,
    powercap_root: str | Path = DEFAULT_POWERCAP_ROOT,
    watts_per_thread_w: float = DEFAULT_WATTS_PER_THREAD_W,
) -> CumulativeMeter:
    """The best meter available here; ``meter.unavailable`` says why better ones were not.

    Never raises: the last resort is :class:`NullMeter` (time only).

    Args:
        devices: GPUs for the NVML meters (``None``: every visible GPU).
        powercap_root: sysfs powercap directory for RAPL.
        watts_per_thread_w: watts per busy CPU thread for ``estimate``.
    """
    meter, _skipped = select_meter(devices=devices, powercap_root=powercap_root, watts_per_thread_w=watts_per_thread_w)
    return meter
