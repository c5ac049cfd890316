"""CPU package energy from Linux powercap RAPL (Intel, and AMD Zen).

Reads ``<root>/intel-rapl:N/energy_uj`` (microjoules) of the top-level
*package* zones only (``name`` starting with ``package``). Nested zones
(``intel-rapl:N:M``: core, uncore, dram) are parts of their package, the
``psys`` zone contains the packages, and ``intel-rapl-mmio:N`` mirrors
``intel-rapl:N``; adding any of them would double-count, so they are skipped.

Each counter wraps at ``max_energy_range_uj``; a window that sees the end
value below the start value adds that range once and is flagged
``counter_wrapped`` (a window longer than one full range, tens of minutes
at full load, cannot be detected). ``energy_uj`` is root-only on most
kernels since CVE-2020-8694: a ``PermissionError`` makes the meter
unavailable with a clear reason. RAPL updates about every 1 ms.

The sysfs root is a constructor argument so tests can use a temporary tree.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

from langchain_energyrouter.energy.base import FLAG_COUNTER_WRAPPED, CumulativeMeter, WindowTracker
from langchain_energyrouter.errors import MeterError

DEFAULT_POWERCAP_ROOT = Path("/sys/class/powercap")
"""Where Linux exposes powercap zones."""

RAPL_UPDATE_PERIOD_S = 0.001
"""RAPL energy counters update about once a millisecond."""

_PACKAGE_ZONE = re.compile(r"^intel-rapl:(\d+)$")


def _read_int(path: Path) -> int:
    """Read one integer sysfs attribute (``open`` is looked up here so tests can patch it)."""
    with open(path, "rb") as f:
        return int(f.read().strip())


class RaplMeter(CumulativeMeter):
    """Energy of the CPU packages from RAPL ``energy_uj`` counters.

    Args:
        root: the powercap sysfs directory.
        tracker: shared overlap tracker.
        clock: monotonic clock in seconds.

    Raises:
        MeterError: no package zone under ``root`` ("not supported"), or a
            counter is unreadable ("no permission").
    """

    method = "rapl"
    is_estimate = False

    def __init__(
        self,
        root: str | Path = DEFAULT_POWERCAP_ROOT,
        *,
        tracker: WindowTracker | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        """Find the package zones and check their counters are readable."""
        self.root = Path(root)
        zones: dict[str, Path] = {}
        ranges_uj: dict[str, int] = {}
        try:
            candidates = sorted(self.root.iterdir()) if self.root.is_dir() else []
        except PermissionError as err:
            msg = f"no permission: cannot list RAPL zones under {self.root} ({err}). Run as root or grant read access."
            raise MeterError(msg) from err
        for zone in candidates:
            if not _PACKAGE_ZONE.match(zone.name):
                continue
            try:
                name = (zone / "name").read_text().strip()
            except OSError:
                continue
            if not name.startswith("package"):
                continue
            label = f"rapl:{name}"
            try:
                _read_int(zone / "energy_uj")
                ranges_uj[label] = _read_int(zone / "max_energy_range_uj")
            except PermissionError as err:
                msg = (
                    f"no permission: cannot read {zone / 'energy_uj'} ({err}). RAPL counters are root-only "
                    "on most kernels (CVE-2020-8694); run as root or `chmod o+r` the energy_uj files."
                )
                raise MeterError(msg) from err
            except (OSError, ValueError) as err:
                msg = f"not supported: cannot read RAPL counter in {zone} ({err!r})."
                raise MeterError(msg) from err
            zones[label] = zone / "energy_uj"
        if not zones:
            msg = f"not supported: no RAPL package zone (intel-rapl:N with name 'package-*') under {self.root}."
            raise MeterError(msg)
        self._zones = zones
        self._ranges_j = {label: r / 1e6 for label, r in ranges_uj.items()}
        super().__init__(tuple(zones), update_period_s=RAPL_UPDATE_PERIOD_S, tracker=tracker, clock=clock)

    def _read_j(self) -> dict[str, float]:
        try:
            return {label: _read_int(path) / 1e6 for label, path in self._zones.items()}
        except OSError as err:
            msg = f"RAPL counter became unreadable under {self.root}: {err!r}"
            raise MeterError(msg) from err

    def _delta_j(self, device: str, start_j: float, end_j: float) -> tuple[float, tuple[str, ...]]:
        if end_j < start_j:
            return end_j + self._ranges_j[device] - start_j, (FLAG_COUNTER_WRAPPED,)
        return end_j - start_j, ()


__all__ = ["DEFAULT_POWERCAP_ROOT", "RAPL_UPDATE_PERIOD_S", "RaplMeter"]
