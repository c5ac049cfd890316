"""langchain-tests' standard unit suite over the router with two tiny real Hugging Face models."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_tests.unit_tests import ChatModelUnitTests

from langchain_energyrouter.router import EnergyAwareRouter


@lru_cache(maxsize=1)
def router_params() -> dict[str, Any]:
    """Constructor keywords shared by every test (models are built once per process)."""
    from langchain_energyrouter.testing import tiny_chat_models, tiny_profile

    return {"models": tiny_chat_models(), "profile": tiny_profile(), "weights": {"accuracy": 0.5, "energy": 0.5}}


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
