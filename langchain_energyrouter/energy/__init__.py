"""Energy meters: measure what one model call used, and say how.

Pick the best meter available here with :func:`default_meter`, which tries
``nvml_counter``, ``nvml_poll``, ``rapl``, ``estimate`` and ``none`` in that
order and records why the better ones could not be used::

    with default_meter() as meter:
        handle = meter.begin()
        try:
            ...  # run the model
        finally:
            reading = meter.end(handle)
        print(reading.as_metadata(), meter.unavailable)

Nothing here imports ``pynvml`` or ``torch`` at import time, and importing the package imports no meter:
its names load on first use, so ``energy.base`` (readings and flags) stays a light import for the learners.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langchain_energyrouter.energy.base import (
        METHODS,
        CumulativeMeter,
        EnergyMeter,
        EnergyReading,
        WindowTracker,
    )
    from langchain_energyrouter.energy.estimate import EstimateMeter
    from langchain_energyrouter.energy.null import NullMeter
    from langchain_energyrouter.energy.nvml import NvmlCounterMeter, NvmlPollMeter
    from langchain_energyrouter.energy.rapl import RaplMeter
    from langchain_energyrouter.energy.select import METERS, default_meter, get_meter, select_meter

_LAZY = {
    "METERS": "select",
    "METHODS": "base",
    "CumulativeMeter": "base",
    "EnergyMeter": "base",
    "EnergyReading": "base",
    "EstimateMeter": "estimate",
    "NullMeter": "null",
    "NvmlCounterMeter": "nvml",
    "NvmlPollMeter": "nvml",
    "RaplMeter": "rapl",
    "WindowTracker": "base",
    "default_meter": "select",
    "get_meter": "select",
    "select_meter": "select",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "METERS",
    "METHODS",
    "CumulativeMeter",
    "EnergyMeter",
    "EnergyReading",
    "EstimateMeter",
    "NullMeter",
    "NvmlCounterMeter",
    "NvmlPollMeter",
    "RaplMeter",
    "WindowTracker",
    "default_meter",
    "get_meter",
    "select_meter",
]
