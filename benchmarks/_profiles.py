"""The made-up profile the router benchmarks share: candidate ``i`` costs ``i + 1`` times the first."""

from __future__ import annotations

from langchain_energyrouter import CostModel, DeviceInfo, EnergyProfile, ModelProfile


def profile_for(
    names: list[str], *, accuracy_step: float = 0.1, context_window: int = 4096, energy_method: str = "estimate"
) -> EnergyProfile:
    """A profile with one entry per name; later names are costlier and more accurate."""
    return EnergyProfile.new(
        {
            name: ModelProfile(
                runtime=CostModel(intercept=0.01 * (i + 1), input_tokens=1e-4, output_tokens=1e-3 * (i + 1)),
                energy=CostModel(intercept=0.1 * (i + 1), input_tokens=1e-3, output_tokens=1e-2 * (i + 1)),
                accuracy=min(0.3 + accuracy_step * i, 1.0),
                context_window=context_window,
            )
            for i, name in enumerate(names)
        },
        device=DeviceInfo(name="benchmark"),
        energy_method=energy_method,  # type: ignore[arg-type]
    )
