"""Overlap is flagged across meters and routers, per physical device (issue 17 item 3).

Each router builds its own meters, and a meter's own tracker sees only its own windows, so two routers in
one process (or a ``model_copy``) running at once never flagged their readings ``overlapped`` and the
callback summed the device's joules twice. The gated double holds each call in flight until both are.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from langchain_core.language_models import BaseChatModel

from langchain_energyrouter.callbacks import EnergyCallbackHandler
from langchain_energyrouter.energy.metering import HOST_DEVICE, DeviceWindows, MeterWindow, physical_devices
from langchain_energyrouter.energy.nvml import NvmlCounterMeter
from langchain_energyrouter.router import EnergyAwareRouter
from tests.unit_tests.doubles import gated
from tests.unit_tests.test_energy_nvml import FakeGpu, install, make_fake_pynvml
from tests.unit_tests.test_router_metering import entry, profile_of


def _run_together(first: BaseChatModel, second: BaseChatModel, handler: EnergyCallbackHandler) -> list[dict]:
    """Invoke both at once, each held in flight until both are; the answers' energy metadata."""
    gates = [m.models["m"] for m in (first, second)]  # type: ignore[attr-defined]
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(r.invoke, "hi", config={"callbacks": [handler]}) for r in (first, second)]
        for g in gates:
            assert g.entered.acquire(timeout=30)
        for g in gates:
            g.gate.set()
        return [f.result().response_metadata["energy"] for f in futures]


def _router() -> EnergyAwareRouter:
    return EnergyAwareRouter(models={"m": gated("m")}, profile=profile_of(m=entry()), learn=False)


def test_two_routers_in_one_process_flag_their_shared_device() -> None:
    handler = EnergyCallbackHandler()
    energies = _run_together(_router(), _router(), handler)
    assert all("overlapped" in e["flags"] for e in energies), energies
    assert handler.energy_j_by_method == {}  # nothing that double-counts reaches the totals
    assert sum(handler.overlapped_calls_by_method.values()) == 2


def test_a_model_copy_flags_overlap_with_its_original() -> None:
    original = _router()
    copy = original.model_copy(update={"models": {"m": gated("m")}, "task_type": "qa"})
    energies = _run_together(original, copy, EnergyCallbackHandler())
    assert all("overlapped" in e["flags"] for e in energies), energies


def test_nvml_meters_over_overlapping_gpu_sets_see_each_other(monkeypatch: pytest.MonkeyPatch) -> None:
    gpus = [FakeGpu(uuid=f"GPU-{i}{i}{i}{i}", pci_bus_id=f"00000000:{17 + i}:00.0") for i in range(2)]
    install(monkeypatch, make_fake_pynvml(gpus))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    windows = DeviceWindows()
    with (
        NvmlCounterMeter(devices=[0]) as one,
        NvmlCounterMeter(devices=[0, 1]) as both,
        NvmlCounterMeter(devices=[1]) as other,
    ):
        assert physical_devices(both) == ("cuda:0", "cuda:1")
        a = MeterWindow(one, windows)
        b = MeterWindow(both, windows)
        gpus[0].energy_mj += 3_000
        assert "overlapped" in a.end().flags and "overlapped" in b.end().flags
        c, d = MeterWindow(one, windows), MeterWindow(other, windows)  # cuda:0 alone, cuda:1 alone
        gpus[0].energy_mj += 1_000
        gpus[1].energy_mj += 1_000
        assert "overlapped" not in c.end().flags and "overlapped" not in d.end().flags
    assert windows.open_count("cuda:0") == windows.open_count("cuda:1") == 0


def test_a_window_dropped_unended_stops_counting() -> None:
    from langchain_energyrouter.energy import EstimateMeter

    windows = DeviceWindows()
    with EstimateMeter() as leaky, EstimateMeter() as meter:
        assert physical_devices(meter) == (HOST_DEVICE,)
        MeterWindow(leaky, windows)  # never ended, dropped at once
        assert windows.open_count(HOST_DEVICE) == 0
        assert "overlapped" not in MeterWindow(meter, windows).end().flags
