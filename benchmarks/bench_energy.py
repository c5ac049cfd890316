"""Cost of energy metering: one meter window, and the callback handler per call.

Run: ``python benchmarks/bench_energy.py``. Prints medians; NVML and RAPL
figures use a faked ``pynvml`` / a temporary sysfs tree when the hardware is
absent and are labelled ``(fake)``: they measure this package's overhead, not
the driver's.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _timing import median_us
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from langchain_energyrouter.callbacks import EnergyCallbackHandler
from langchain_energyrouter.energy import (
    EstimateMeter,
    NullMeter,
    NvmlCounterMeter,
    NvmlPollMeter,
    RaplMeter,
    select_meter,
)
from langchain_energyrouter.energy.base import CumulativeMeter


def median_s(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` runs (after a warm-up)."""
    return median_us(fn, repeats, warmup=100) / 1e6


def window_cost_us(meter: CumulativeMeter, repeats: int = 20_000) -> float:
    return median_s(lambda: meter.end(meter.begin()), repeats) * 1e6


def fake_pynvml() -> types.ModuleType:
    import pynvml as real

    fake = types.ModuleType("pynvml")
    for name in dir(real):
        if name.startswith("NVML"):
            setattr(fake, name, getattr(real, name))
    counter = {"mj": 0}

    def energy(handle: Any) -> int:
        counter["mj"] += 7
        return counter["mj"]

    def field_values(handle: Any, field_ids: list[int]) -> list[Any]:
        ns = types.SimpleNamespace
        return [ns(nvmlReturn=real.NVML_SUCCESS, value=ns(uiVal=150_000))]

    def not_mig(handle: Any) -> list[int]:
        raise real.NVMLError_NotSupported()

    fake.nvmlInit = lambda: None  # type: ignore[attr-defined]
    fake.nvmlShutdown = lambda: None  # type: ignore[attr-defined]
    fake.nvmlDeviceGetCount = lambda: 1  # type: ignore[attr-defined]
    fake.nvmlDeviceGetHandleByIndex = lambda i: object()  # type: ignore[attr-defined]
    fake.nvmlDeviceGetMigMode = not_mig  # type: ignore[attr-defined]
    fake.nvmlDeviceGetTotalEnergyConsumption = energy  # type: ignore[attr-defined]
    fake.nvmlDeviceGetFieldValues = field_values  # type: ignore[attr-defined]
    fake.nvmlDeviceGetPowerUsage = lambda h: 150_000  # type: ignore[attr-defined]
    return fake


class Metered(BaseChatModel):
    """A fake chat model that does what the router does: one estimate window per call."""

    meter: Any

    @property
    def _llm_type(self) -> str:
        return "bench"

    def _generate(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        handle = self.meter.begin()
        energy = self.meter.end(handle).as_metadata()
        message = AIMessage(content="ok", response_metadata={"energy": energy, "model_name": "bench"})
        return ChatResult(generations=[ChatGeneration(message=message)])


def main() -> int:
    meter, skipped = select_meter()
    with meter:
        print(f"default meter here: {meter.method}; unavailable: {dict(skipped)}")
    print("\nmedian cost of one window (begin + end):")
    with EstimateMeter() as m:
        print(f"  estimate            {window_cost_us(m):8.2f} us")
    with NullMeter() as m:
        print(f"  none                {window_cost_us(m):8.2f} us")
    with tempfile.TemporaryDirectory() as tmp:
        zone = Path(tmp) / "intel-rapl:0"
        zone.mkdir()
        (zone / "name").write_text("package-0\n")
        (zone / "energy_uj").write_text("123456\n")
        (zone / "max_energy_range_uj").write_text("262143328850\n")
        with RaplMeter(tmp) as m:
            print(f"  rapl (fake sysfs)   {window_cost_us(m):8.2f} us")
    real_pynvml = sys.modules.get("pynvml")
    sys.modules["pynvml"] = fake_pynvml()
    try:
        with NvmlCounterMeter(environ={}) as m:
            print(f"  nvml_counter (fake) {window_cost_us(m):8.2f} us")
        with NvmlPollMeter(environ={}, interval_s=0.1) as m:
            print(f"  nvml_poll (fake)    {window_cost_us(m):8.2f} us")
    finally:
        if real_pynvml is None:
            del sys.modules["pynvml"]
        else:
            sys.modules["pynvml"] = real_pynvml

    print("\ncallback handler overhead (median invoke of a metered fake chat model):")
    with EstimateMeter() as m:
        model = Metered(meter=m)
        handler = EnergyCallbackHandler()
        repeats = 3_000
        # interleave rounds so drift affects both sides alike
        without_s: list[float] = []
        with_s: list[float] = []
        for _ in range(5):
            without_s.append(median_s(lambda: model.invoke("hi"), repeats))
            with_s.append(median_s(lambda: model.invoke("hi", config={"callbacks": [handler]}), repeats))
        base_s, handled_s = statistics.median(without_s), statistics.median(with_s)
        print(f"  without handler     {base_s * 1e6:8.1f} us")
        print(f"  with handler        {handled_s * 1e6:8.1f} us")
        print(f"  ratio               {handled_s / base_s:8.3f}  (+{(handled_s - base_s) * 1e6:.1f} us per call)")
        print(f"  records collected   {len(handler.records)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
