"""RAPL meter against a temporary powercap sysfs tree."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from langchain_energyrouter.energy import RaplMeter, select_meter
from langchain_energyrouter.energy import rapl as rapl_module
from langchain_energyrouter.errors import MeterError

MAX_RANGE_UJ = 262_143_328_850


def make_zone(root: Path, zone: str, name: str, energy_uj: int, max_range_uj: int = MAX_RANGE_UJ) -> Path:
    path = root / zone
    path.mkdir(parents=True)
    (path / "name").write_text(f"{name}\n")
    (path / "energy_uj").write_text(f"{energy_uj}\n")
    (path / "max_energy_range_uj").write_text(f"{max_range_uj}\n")
    return path


def set_energy(zone: Path, energy_uj: int) -> None:
    (zone / "energy_uj").write_text(f"{energy_uj}\n")


def ticks(*values_s: float) -> Callable[[], float]:
    it: Iterator[float] = iter(values_s)
    return lambda: next(it)


@pytest.fixture
def powercap(tmp_path: Path) -> dict[str, Path]:
    """Two packages, each with nested core/dram zones, plus psys and an mmio mirror."""
    return {
        "pkg0": make_zone(tmp_path, "intel-rapl:0", "package-0", 1_000_000),
        "core0": make_zone(tmp_path, "intel-rapl:0/intel-rapl:0:0", "core", 500_000),
        "dram0": make_zone(tmp_path, "intel-rapl:0/intel-rapl:0:1", "dram", 200_000),
        "pkg1": make_zone(tmp_path, "intel-rapl:1", "package-1", 7_000_000),
        "psys": make_zone(tmp_path, "intel-rapl:2", "psys", 9_000_000),
        "mmio": make_zone(tmp_path, "intel-rapl-mmio:0", "package-0", 1_000_000),
        "root": tmp_path,
    }


def test_reads_package_zones_only(powercap: dict[str, Path]) -> None:
    with RaplMeter(powercap["root"], clock=ticks(0.0, 2.0)) as meter:
        assert meter.devices == ("rapl:package-0", "rapl:package-1")
        handle = meter.begin()
        set_energy(powercap["pkg0"], 31_000_000)  # +30 J
        set_energy(powercap["pkg1"], 17_000_000)  # +10 J
        for nested in ("core0", "dram0", "psys", "mmio"):  # must not be added
            set_energy(powercap[nested], 99_000_000_000)
        reading = meter.end(handle)
    assert reading.method == "rapl"
    assert reading.is_estimate is False
    assert reading.energy_j_by_device == pytest.approx({"rapl:package-0": 30.0, "rapl:package-1": 10.0})
    assert reading.energy_j == pytest.approx(40.0)
    assert reading.runtime_s == pytest.approx(2.0)
    assert reading.flags == ()


def test_wrap_around_uses_max_energy_range(powercap: dict[str, Path]) -> None:
    set_energy(powercap["pkg0"], MAX_RANGE_UJ - 5_000_000)  # 5 J before the wrap
    with RaplMeter(powercap["root"], clock=ticks(0.0, 1.0)) as meter:
        handle = meter.begin()
        set_energy(powercap["pkg0"], 3_000_000)  # wrapped, then 3 J more
        reading = meter.end(handle)
    assert reading.energy_j_by_device["rapl:package-0"] == pytest.approx(8.0)
    assert "counter_wrapped" in reading.flags


def test_zero_advance_is_below_resolution(powercap: dict[str, Path]) -> None:
    with RaplMeter(powercap["root"], clock=ticks(0.0, 1.0)) as meter:
        reading = meter.end(meter.begin())
    assert reading.energy_j == 0.0
    assert "below_resolution" in reading.flags


def test_permission_denied_makes_rapl_unavailable(powercap: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Unprivileged reads of energy_uj fail with EACCES (CVE-2020-8694 made it 0400).

    chmod 000 does not stop root, which runs these tests in CI, so the meter's
    one file-opening seam (``rapl.open``) is patched to raise exactly what the
    kernel raises for that path, and only for that path.
    """
    denied = powercap["pkg0"] / "energy_uj"

    def fake_open(path: Any, *args: Any, **kwargs: Any) -> Any:
        if Path(path) == denied:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return open(path, *args, **kwargs)

    monkeypatch.setattr(rapl_module, "open", fake_open, raising=False)
    with pytest.raises(MeterError, match=r"no permission: cannot read .*intel-rapl:0/energy_uj"):
        RaplMeter(powercap["root"])
    meter, skipped = select_meter(powercap_root=powercap["root"], methods=("rapl", "estimate"))
    with meter:
        assert meter.method == "estimate"
    assert skipped[0][0] == "rapl" and skipped[0][1].startswith("no permission:")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_permission_denied_for_real(powercap: dict[str, Path]) -> None:
    (powercap["pkg0"] / "energy_uj").chmod(0)
    with pytest.raises(MeterError, match="no permission"):
        RaplMeter(powercap["root"])


def test_missing_powercap_is_not_supported(tmp_path: Path) -> None:
    with pytest.raises(MeterError, match="not supported: no RAPL package zone"):
        RaplMeter(tmp_path / "absent")
