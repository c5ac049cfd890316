"""Shared fixtures: small in-code profiles (no files, no models)."""

from __future__ import annotations

import pytest

from langchain_energyrouter import CostModel, DeviceInfo, EnergyProfile, ModelProfile


def make_model(
    *,
    runtime: tuple[float, float, float, float] = (0.1, 0.001, 0.02, 0.0),
    energy: tuple[float, float, float, float] = (10.0, 0.1, 2.0, 0.0),
    accuracy: float = 0.7,
    context_window: int = 4096,
    output: tuple[float, float] | None = None,
    accuracy_by_task: dict[str, float] | None = None,
) -> ModelProfile:
    """A ModelProfile from coefficient tuples (b0, b1, b2, b3)."""
    from langchain_energyrouter import OutputLengthModel

    def cost(b: tuple[float, float, float, float]) -> CostModel:
        return CostModel(
            intercept=b[0], input_tokens=b[1], output_tokens=b[2], interaction=b[3], uses_interaction=b[3] != 0.0
        )

    kwargs = {}
    if output is not None:
        kwargs["output_length"] = OutputLengthModel(intercept=output[0], slope=output[1], source="fitted")
    return ModelProfile(
        runtime=cost(runtime),
        energy=cost(energy),
        accuracy=accuracy,
        context_window=context_window,
        accuracy_by_task=accuracy_by_task or {},
        **kwargs,
    )


def make_profile(models: dict[str, ModelProfile]) -> EnergyProfile:
    return EnergyProfile.new(models, device=DeviceInfo(name="test device", kind="cpu"), energy_method="estimate")


@pytest.fixture
def three_model_profile() -> EnergyProfile:
    """Small/fast/less accurate, medium, big/slow/accurate."""
    return make_profile(
        {
            "small": make_model(runtime=(0.05, 0.0005, 0.01, 0.0), energy=(2, 0.02, 0.5, 0), accuracy=0.55),
            "medium": make_model(runtime=(0.1, 0.001, 0.02, 0.0), energy=(5, 0.05, 1.0, 0), accuracy=0.65),
            "large": make_model(runtime=(0.3, 0.002, 0.05, 0.0), energy=(20, 0.2, 4.0, 0), accuracy=0.80),
        }
    )
