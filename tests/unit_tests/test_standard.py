"""langchain-tests' standard unit suite over the router with two tiny real Hugging Face models."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_tests.unit_tests import ChatModelUnitTests

from langchain_energyrouter import CostModel, DeviceInfo, EnergyProfile, ModelProfile
from langchain_energyrouter.router import EnergyAwareRouter


@lru_cache(maxsize=1)
def router_params() -> dict[str, Any]:
    """Constructor keywords shared by every test (models are built once per process)."""
    from langchain_energyrouter.testing import tiny_chat_models

    def entry(scale: float, accuracy: float) -> ModelProfile:
        return ModelProfile(
            runtime=CostModel(intercept=0.01 * scale, input_tokens=1e-5, output_tokens=1e-3 * scale),
            energy=CostModel(intercept=0.1 * scale, input_tokens=1e-4, output_tokens=1e-2 * scale),
            accuracy=accuracy,
            context_window=1024,
        )

    profile = EnergyProfile.new(
        {"tiny-a": entry(1.0, 0.4), "tiny-b": entry(5.0, 0.8)},
        device=DeviceInfo(name="test cpu", kind="cpu"),
        energy_method="estimate",
    )
    return {"models": tiny_chat_models(), "profile": profile, "weights": {"accuracy": 0.5, "energy": 0.5}}


class TestEnergyAwareRouterUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return EnergyAwareRouter

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return dict(router_params())

    @property
    def model_override_value(self) -> str:
        return "tiny-b"
