"""Estimated CPU energy: process CPU seconds x watts per busy thread.

For machines with no energy counter at all (no NVML, no readable RAPL). The
figure is a model, never a measurement: every reading has
``method="estimate"`` and ``is_estimate=True``.

``energy_j = cpu_s * watts_per_thread_w`` where ``cpu_s`` is the growth of
:func:`time.process_time` (user + system CPU seconds of *all threads of this
process*) over the window. The default of :data:`DEFAULT_WATTS_PER_THREAD_W`
= 4 W per busy hardware thread is the figure CodeCarbon falls back on for an
unknown CPU; pass your CPU's TDP divided by its thread count for a better one.
Idle, memory, GPU and other processes' power are not included.

Because CPU time is process-wide, concurrent windows overlap by construction:
each window counts every thread's CPU time over its span (including work that
is not the model call), and is flagged ``"overlapped"`` when another window
of the same meter was open at the same time. Do not sum overlapped readings.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from langchain_energyrouter.energy.base import CumulativeMeter, WindowTracker
from langchain_energyrouter.errors import MeterError

DEFAULT_WATTS_PER_THREAD_W = 4.0
"""Watts per busy CPU thread when the CPU is unknown (CodeCarbon's fallback)."""

CPU_DEVICE = "cpu:process"
"""The device label of estimate readings: this process's CPU time."""


class EstimateMeter(CumulativeMeter):
    """Estimate energy as process CPU seconds times watts per busy thread.

    Args:
        watts_per_thread_w: power of one fully busy CPU thread in watts.
        tracker: shared overlap tracker.
        clock: monotonic wall clock in seconds.
        cpu_clock: CPU-seconds clock (default :func:`time.process_time`).
    """

    method = "estimate"
    is_estimate = True

    def __init__(
        self,
        watts_per_thread_w: float = DEFAULT_WATTS_PER_THREAD_W,
        *,
        tracker: WindowTracker | None = None,
        clock: Callable[[], float] = time.perf_counter,
        cpu_clock: Callable[[], float] = time.process_time,
    ) -> None:
        """Create the meter; raises :class:`MeterError` on a bad wattage."""
        if not (math.isfinite(watts_per_thread_w) and watts_per_thread_w > 0):
            msg = f"watts_per_thread_w must be a positive finite number of watts, got {watts_per_thread_w!r}."
            raise MeterError(msg)
        self.watts_per_thread_w = float(watts_per_thread_w)
        self._cpu_clock = cpu_clock
        resolution_s = time.get_clock_info("process_time").resolution if cpu_clock is time.process_time else 0.0
        super().__init__((CPU_DEVICE,), update_period_s=resolution_s, tracker=tracker, clock=clock)

    def _read_j(self) -> dict[str, float]:
        return {CPU_DEVICE: self._cpu_clock() * self.watts_per_thread_w}


__all__ = ["CPU_DEVICE", "DEFAULT_WATTS_PER_THREAD_W", "EstimateMeter"]
