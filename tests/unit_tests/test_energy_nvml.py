"""NVML meters against a faked ``pynvml``, plus one real test on a GPU-less machine.

The fake is a ``types.ModuleType`` carrying the real module's constants and
exception classes (so ``except pynvml.NVMLError`` behaves as in production)
and small functions with the real functions' names and arities (checked by
``test_fake_matches_real_signatures``).
"""

from __future__ import annotations

import ctypes
import inspect
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pynvml as real_pynvml
import pytest

from langchain_energyrouter.energy import (
    EstimateMeter,
    NvmlCounterMeter,
    NvmlPollMeter,
    default_meter,
    select_meter,
)
from langchain_energyrouter.energy.nvml import cuda_visible_entries
from langchain_energyrouter.errors import MeterError, MissingExtraError


@dataclass
class FakeGpu:
    """One fake GPU; tests change ``energy_mj`` / ``power_mw`` between reads."""

    uuid: str
    pci_bus_id: str
    name: str = "NVIDIA H100"
    energy_mj: int = 0
    power_mw: list[int] = field(default_factory=lambda: [100_000])
    mig_mode: int | None = None  # None: MIG not supported
    has_counter: bool = True
    has_instant: bool = True
    has_power: bool = True

    def next_power_mw(self) -> int:
        return self.power_mw.pop(0) if len(self.power_mw) > 1 else self.power_mw[0]


def make_fake_pynvml(gpus: list[FakeGpu], init_error: type[Exception] | None = None) -> types.ModuleType:
    """A ``pynvml`` stand-in over ``gpus``; ``fake.calls`` counts init/shutdown."""
    fake = types.ModuleType("pynvml")
    for name in dir(real_pynvml):
        if name.startswith("NVML"):  # constants and NVMLError* classes
            setattr(fake, name, getattr(real_pynvml, name))
    calls = {"init": 0, "shutdown": 0}

    def nvmlInit() -> None:
        if init_error is not None:
            raise init_error()
        calls["init"] += 1

    def nvmlShutdown() -> None:
        calls["shutdown"] += 1

    def nvmlDeviceGetCount() -> int:
        return len(gpus)

    def nvmlDeviceGetHandleByIndex(index: int) -> FakeGpu:
        if not 0 <= index < len(gpus):
            raise real_pynvml.NVMLError_InvalidArgument()
        return gpus[index]

    def nvmlDeviceGetHandleByPciBusId(pciBusId: str) -> FakeGpu:
        for gpu in gpus:
            if gpu.pci_bus_id.lower() == pciBusId.lower():
                return gpu
        raise real_pynvml.NVMLError_NotFound()

    def nvmlDeviceGetUUID(handle: FakeGpu) -> str:
        return handle.uuid

    def nvmlDeviceGetName(handle: FakeGpu) -> str:
        return handle.name

    def nvmlDeviceGetMigMode(device: FakeGpu) -> list[int]:
        if device.mig_mode is None:
            raise real_pynvml.NVMLError_NotSupported()
        return [device.mig_mode, device.mig_mode]

    def nvmlDeviceGetTotalEnergyConsumption(handle: FakeGpu) -> int:
        if not handle.has_counter:
            raise real_pynvml.NVMLError_NotSupported()
        return handle.energy_mj

    def nvmlDeviceGetFieldValues(handle: FakeGpu, fieldIds: list[int]) -> list[Any]:
        assert fieldIds == [real_pynvml.NVML_FI_DEV_POWER_INSTANT]
        if not handle.has_instant:
            ret, value = real_pynvml.NVML_ERROR_NOT_SUPPORTED, 0
        else:
            ret, value = real_pynvml.NVML_SUCCESS, handle.next_power_mw()
        return [types.SimpleNamespace(nvmlReturn=ret, value=types.SimpleNamespace(uiVal=value))]

    def nvmlDeviceGetPowerUsage(handle: FakeGpu) -> int:
        if not handle.has_power:
            raise real_pynvml.NVMLError_NotSupported()
        return handle.next_power_mw()

    for fn in list(locals().values()):
        if inspect.isfunction(fn) and fn.__name__.startswith("nvml"):
            setattr(fake, fn.__name__, fn)
    fake.calls = calls  # type: ignore[attr-defined]
    return fake


def install(monkeypatch: pytest.MonkeyPatch, fake: types.ModuleType) -> types.ModuleType:
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    return fake


def ticks(*values_s: float) -> Callable[[], float]:
    """A clock returning ``values_s`` in turn."""
    it: Iterator[float] = iter(values_s)
    return lambda: next(it)


GPUS = [
    FakeGpu(uuid="GPU-aaaa-1111", pci_bus_id="00000000:17:00.0"),
    FakeGpu(uuid="GPU-bbbb-2222", pci_bus_id="00000000:65:00.0"),
    FakeGpu(uuid="GPU-cccc-3333", pci_bus_id="00000000:CA:00.0"),
]


@pytest.fixture
def gpus() -> list[FakeGpu]:
    return [FakeGpu(uuid=g.uuid, pci_bus_id=g.pci_bus_id) for g in GPUS]


def test_fake_matches_real_signatures() -> None:
    fake = make_fake_pynvml([])
    for name in dir(fake):
        fn = getattr(fake, name)
        if inspect.isfunction(fn):
            real_params = list(inspect.signature(getattr(real_pynvml, name)).parameters)
            assert list(inspect.signature(fn).parameters) == real_params, name


def test_counter_deltas_in_joules(monkeypatch: pytest.MonkeyPatch, gpus: list[FakeGpu]) -> None:
    fake = install(monkeypatch, make_fake_pynvml(gpus))
    gpus[0].energy_mj, gpus[1].energy_mj = 1_000, 50_000
    meter = NvmlCounterMeter([0, 1], clock=ticks(10.0, 12.5), environ={})
    with meter:
        handle = meter.begin()
        gpus[0].energy_mj += 2_500
        gpus[1].energy_mj += 500
        reading = meter.end(handle)
    assert reading.method == "nvml_counter"
    assert reading.is_estimate is False
    assert reading.devices == ("cuda:0", "cuda:1")
    assert reading.energy_j_by_device == pytest.approx({"cuda:0": 2.5, "cuda:1": 0.5})
    assert reading.energy_j == pytest.approx(3.0)
    assert reading.runtime_s == pytest.approx(2.5)
    assert reading.flags == ()
    assert fake.calls == {"init": 1, "shutdown": 1}


def test_short_or_zero_advance_windows_are_below_resolution(
    monkeypatch: pytest.MonkeyPatch, gpus: list[FakeGpu]
) -> None:
    install(monkeypatch, make_fake_pynvml(gpus))
    with NvmlCounterMeter([0], clock=ticks(0.0, 1.0, 2.0, 2.05), environ={}) as meter:
        handle = meter.begin()  # a full second, but the counter never moved
        zero = meter.end(handle)
        handle = meter.begin()
        gpus[0].energy_mj += 10
        short = meter.end(handle)  # 50 ms: shorter than the ~100 ms update period
    assert zero.energy_j == 0.0
    assert "below_resolution" in zero.flags
    assert short.energy_j == pytest.approx(0.01)
    assert "below_resolution" in short.flags


def test_counter_going_backwards_is_flagged(monkeypatch: pytest.MonkeyPatch, gpus: list[FakeGpu]) -> None:
    install(monkeypatch, make_fake_pynvml(gpus))
    gpus[0].energy_mj = 900_000
    with NvmlCounterMeter([0], clock=ticks(0.0, 1.0), environ={}) as meter:
        handle = meter.begin()
        gpus[0].energy_mj = 1_000  # driver reload / GPU reset
        reading = meter.end(handle)
    assert "counter_went_backwards" in reading.flags
    assert reading.energy_j == 0.0


def test_overlapping_windows_get_full_delta_and_flag(monkeypatch: pytest.MonkeyPatch, gpus: list[FakeGpu]) -> None:
    install(monkeypatch, make_fake_pynvml(gpus))
    with NvmlCounterMeter([0], clock=ticks(0.0, 1.0, 2.0, 3.0, 4.0, 5.0), environ={}) as meter:
        first = meter.begin()
        gpus[0].energy_mj += 1_000
        second = meter.begin()
        gpus[0].energy_mj += 1_000
        second_reading = meter.end(second)
        gpus[0].energy_mj += 1_000
        first_reading = meter.end(first)
        alone = meter.begin()
        gpus[0].energy_mj += 1_000
        alone_reading = meter.end(alone)
    assert "overlapped" in first_reading.flags and first_reading.energy_j == pytest.approx(3.0)
    assert "overlapped" in second_reading.flags and second_reading.energy_j == pytest.approx(1.0)
    assert "overlapped" not in alone_reading.flags


def test_end_rejects_foreign_and_reused_handles(monkeypatch: pytest.MonkeyPatch, gpus: list[FakeGpu]) -> None:
    install(monkeypatch, make_fake_pynvml(gpus))
    with NvmlCounterMeter([0], environ={}) as meter:
        handle = meter.begin()
        meter.end(handle)
        with pytest.raises(MeterError, match="already ended"):
            meter.end(handle)
        with pytest.raises(MeterError, match="not a window"):
            meter.end(object())
    with pytest.raises(MeterError, match="closed"):
        meter.begin()


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (real_pynvml.NVMLError_LibraryNotFound, "no library: NVMLError_LibraryNotFound"),
        (real_pynvml.NVMLError_DriverNotLoaded, "no driver: NVMLError_DriverNotLoaded"),
        (real_pynvml.NVMLError_NoPermission, "no permission: NVMLError_NoPermission"),
    ],
)
def test_init_errors_make_nvml_unavailable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, error: type[Exception], reason: str
) -> None:
    fake = install(monkeypatch, make_fake_pynvml([], init_error=error))
    with pytest.raises(MeterError, match=reason):
        NvmlCounterMeter()
    meter, skipped = select_meter(powercap_root=tmp_path)
    with meter:
        assert isinstance(meter, EstimateMeter)
    assert [m for m, _ in skipped] == ["nvml_counter", "nvml_poll", "rapl"]
    assert skipped[0][1].startswith(reason)
    assert meter.unavailable["nvml_poll"].startswith(reason)
    assert fake.calls["shutdown"] == 0  # never initialised, so never shut down


def test_not_supported_counter_falls_back_to_polling(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, gpus: list[FakeGpu]
) -> None:
    for gpu in gpus:
        gpu.has_counter = False  # pre-Volta
    fake = install(monkeypatch, make_fake_pynvml(gpus))
    meter, skipped = select_meter(powercap_root=tmp_path)
    with meter:
        assert isinstance(meter, NvmlPollMeter)
        assert meter.devices == ("cuda:0", "cuda:1", "cuda:2")
    reason = "not supported: NVMLError_NotSupported: Not Supported (nvmlDeviceGetTotalEnergyConsumption)"
    assert skipped == [("nvml_counter", reason)]
    assert meter.unavailable == dict(skipped)
    assert fake.calls == {"init": 2, "shutdown": 2}  # the failed counter meter shut NVML down too


def test_missing_pynvml_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    with pytest.raises(MissingExtraError, match=r"langchain-energyrouter\[nvml\]"):
        NvmlCounterMeter()
    meter = default_meter(powercap_root=tmp_path)
    with meter:
        assert meter.method == "estimate"
    assert meter.unavailable["nvml_counter"].startswith("no library:")


def test_mig_is_refused(monkeypatch: pytest.MonkeyPatch, gpus: list[FakeGpu]) -> None:
    gpus[0].mig_mode = real_pynvml.NVML_DEVICE_MIG_ENABLE
    gpus[1].mig_mode = real_pynvml.NVML_DEVICE_MIG_DISABLE
    fake = install(monkeypatch, make_fake_pynvml(gpus))
    with pytest.raises(MeterError, match="cuda:0 has MIG mode enabled"):
        NvmlCounterMeter([0], environ={})
    with pytest.raises(MeterError, match="MIG slice 'MIG-1234"):
        NvmlCounterMeter(environ={"CUDA_VISIBLE_DEVICES": "MIG-1234-5678"})
    NvmlCounterMeter([1], environ={}).close()  # MIG-capable but disabled: fine
    assert fake.calls["init"] == fake.calls["shutdown"] == 3


def test_cuda_visible_devices_mapping(monkeypatch: pytest.MonkeyPatch, gpus: list[FakeGpu]) -> None:
    install(monkeypatch, make_fake_pynvml(gpus))
    for gpu, energy_mj in zip(gpus, (1_000, 2_000, 3_000), strict=True):
        gpu.energy_mj = energy_mj

    def visible(env: str, devices: list[int | str] | None = None) -> dict[str, float]:
        with NvmlCounterMeter(devices, environ={"CUDA_VISIBLE_DEVICES": env}) as meter:
            return meter._read_j()

    assert visible("2,0") == {"cuda:0": 3.0, "cuda:1": 1.0}  # CUDA renumbers: cuda:0 is NVML index 2
    assert visible("2,0", ["cuda:1"]) == {"cuda:1": 1.0}
    assert visible("GPU-bbbb") == {"cuda:0": 2.0}  # UUID prefix, as CUDA accepts
    assert visible("00000000:ca:00.0,GPU-aaaa-1111") == {"cuda:0": 3.0, "cuda:1": 1.0}  # PCI bus id
    assert visible("1,,0") == {"cuda:0": 2.0}  # CUDA stops at the first empty entry
    with NvmlCounterMeter(["GPU-cccc-3333"], environ={}) as meter:
        assert meter.devices == ("GPU-cccc-3333",)
    with pytest.raises(MeterError, match="cuda:1 is not visible"):
        NvmlCounterMeter([1], environ={"CUDA_VISIBLE_DEVICES": "0"})
    with pytest.raises(MeterError, match="no GPU is visible"):
        NvmlCounterMeter(environ={"CUDA_VISIBLE_DEVICES": "-1"})
    with pytest.raises(MeterError, match="no GPU with UUID"):
        NvmlCounterMeter(environ={"CUDA_VISIBLE_DEVICES": "GPU-ffff"})
    assert cuda_visible_entries({}) is None


def test_mixed_gpu_models_without_pci_order_warn(monkeypatch: pytest.MonkeyPatch, gpus: list[FakeGpu]) -> None:
    gpus[1].name = "NVIDIA A100"
    install(monkeypatch, make_fake_pynvml(gpus))
    with pytest.warns(RuntimeWarning, match="CUDA_DEVICE_ORDER"):
        NvmlCounterMeter([0], environ={}).close()
    NvmlCounterMeter([0], environ={"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}).close()


def test_poll_meter_integrates_with_trapezoid_rule(monkeypatch: pytest.MonkeyPatch, gpus: list[FakeGpu]) -> None:
    gpus[0].power_mw = [100_000, 200_000, 100_000, 300_000]  # probe, t=0, t=1, t=3
    install(monkeypatch, make_fake_pynvml(gpus))
    # clock: initial sample, begin (sample, start), end (sample, end); a huge
    # interval keeps the thread from taking samples of its own.
    meter = NvmlPollMeter([0], interval_s=3600.0, clock=ticks(0.0, 1.0, 1.0, 3.0, 3.0), environ={})
    with meter:
        handle = meter.begin()
        reading = meter.end(handle)
    # 0->1 s: (200+100)/2 W (before the window); 1->3 s: (100+300)/2 W * 2 s
    assert reading.energy_j == pytest.approx(400.0)
    assert reading.method == "nvml_poll"
    assert reading.runtime_s == pytest.approx(2.0)
    # shorter than the sampling interval: only the begin/end samples went in
    assert reading.flags == ("below_resolution",)
    assert not meter.running


def test_poll_meter_falls_back_to_averaged_power(monkeypatch: pytest.MonkeyPatch, gpus: list[FakeGpu]) -> None:
    gpus[0].has_instant = False
    gpus[0].power_mw = [50_000]
    install(monkeypatch, make_fake_pynvml(gpus))
    with NvmlPollMeter([0], interval_s=3600.0, clock=ticks(0.0, 0.0, 0.0, 2.0, 2.0), environ={}) as meter:
        reading = meter.end(meter.begin())
    assert reading.energy_j == pytest.approx(100.0)
    assert "power_averaged" in reading.flags
    gpus[1].has_instant = gpus[1].has_power = False
    with pytest.raises(MeterError, match=r"not supported: .*neither NVML_FI_DEV_POWER_INSTANT"):
        NvmlPollMeter([1], environ={})


def test_poll_thread_samples_and_close_stops_it(monkeypatch: pytest.MonkeyPatch, gpus: list[FakeGpu]) -> None:
    fake = install(monkeypatch, make_fake_pynvml(gpus))
    meter = NvmlPollMeter([0], interval_s=0.001, environ={})
    assert meter.running
    deadline_s = time.monotonic() + 10.0  # a hang guard, not a performance threshold
    while meter.samples < 3 and time.monotonic() < deadline_s:
        time.sleep(0.001)
    assert meter.samples >= 3
    meter.close()
    assert not meter.running
    samples = meter.samples
    meter.close()  # idempotent
    assert meter.samples == samples
    assert fake.calls == {"init": 1, "shutdown": 1}


def test_energy_package_does_not_import_pynvml_or_torch() -> None:
    code = (
        "import sys, langchain_energyrouter.energy, langchain_energyrouter.callbacks; "
        "bad = {'pynvml', 'torch'} & set(sys.modules); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


def _nvml_library_present() -> bool:
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


@pytest.mark.skipif(_nvml_library_present(), reason="this machine has libnvidia-ml.so.1")
def test_real_machine_without_gpu_reports_why_and_falls_back() -> None:
    """No fakes: the real nvidia-ml-py without libnvidia-ml.so.1."""
    assert "pynvml" not in sys.modules or sys.modules["pynvml"] is real_pynvml
    meter = default_meter()
    with meter:
        assert meter.method in ("rapl", "estimate")
        reading = meter.end(meter.begin())
    assert reading.method == meter.method
    for method in ("nvml_counter", "nvml_poll"):
        reason = meter.unavailable[method]
        assert reason.startswith("no library: NVMLError_LibraryNotFound: NVML Shared Library Not Found"), reason
    with pytest.raises(real_pynvml.NVMLError_LibraryNotFound):
        real_pynvml.nvmlInit()
