"""The meter of last resort: time only, no joules (method ``"none"``).

Used for remote endpoints, whose energy is spent on someone else's hardware:
readings carry ``energy_j=None`` and the flag ``"not_measured_locally"``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from langchain_energyrouter.energy.base import (
    FLAG_NOT_MEASURED_LOCALLY,
    CumulativeMeter,
    EnergyReading,
    WindowTracker,
)


class NullMeter(CumulativeMeter):
    """Measures wall time only; ``energy_j`` is always ``None``."""

    method = "none"
    is_estimate = False

    def __init__(self, *, tracker: WindowTracker | None = None, clock: Callable[[], float] = time.perf_counter) -> None:
        """Create the meter.

        Args:
            tracker: shared overlap tracker (no devices, so never flags overlaps).
            clock: monotonic clock in seconds.
        """
        super().__init__((), update_period_s=0.0, tracker=tracker, clock=clock)

    def _read_j(self) -> dict[str, float]:
        return {}

    def _reading(self, by_device: dict[str, float], runtime_s: float, flags: tuple[str, ...]) -> EnergyReading:
        return EnergyReading(
            energy_j=None,
            energy_j_by_device={},
            runtime_s=runtime_s,
            method=self.method,
            is_estimate=False,
            devices=(),
            flags=(*flags, FLAG_NOT_MEASURED_LOCALLY),
        )


__all__ = ["NullMeter"]
