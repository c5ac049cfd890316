"""Collect the energy of every routed call with ``get_energy_callback()``.

Runs a few calls through a router (invoke, stream, batch) inside the ``with``
block and prints one record per LLM call and the totals per method and model.
Measured and estimated joules are kept apart: on a machine without NVML or
RAPL every figure is an estimate (method ``estimate``), and says so.

Run it::

    python examples/energy_callback.py
"""

from __future__ import annotations

from langchain_energyrouter import EnergyAwareRouter, get_energy_callback


def build_router() -> EnergyAwareRouter:
    """Two real tiny offline models and a made-up profile (see ``lcel_chain.py`` for real ones)."""
    from langchain_energyrouter.testing import tiny_chat_models, tiny_profile

    return EnergyAwareRouter(models=tiny_chat_models(), energy_profile=tiny_profile())


def main(argv: list[str] | None = None) -> int:
    router = build_router()
    try:
        with get_energy_callback() as cb:
            router.invoke("What is the capital of France?", weights={"accuracy": 1.0})
            for _chunk in router.stream("Name a colour.", weights={"energy": 1.0}):
                pass
            router.batch(["What is 2 + 2?", "Name an animal."])
    finally:
        router.close()
    for record in cb.records:
        reading = record.reading
        label = " (estimate)" if reading.is_estimate else ""
        print(
            f"{record.model_name:<8} {reading.energy_j:.4f} J{label} in {reading.runtime_s:.4f} s  "
            f"flags={list(reading.flags)}"
        )
    print("calls by method:", cb.calls_by_method)
    print("joules by method:", {m: round(j, 4) for m, j in cb.energy_j_by_method.items()})
    print("joules by model:", cb.energy_j_by_model)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
