"""langchain-tests' standard integration suite over the router with two tiny real Hugging Face models.

The candidates are local pipelines: no tool calling, structured output, JSON
mode or multimodal inputs, so those tests are skipped by the capability flags
below. Everything else runs for real (about 7 ms per tiny-model call).
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_tests.integration_tests import ChatModelIntegrationTests

from langchain_energyrouter.router import EnergyAwareRouter
from tests.unit_tests.test_standard import router_params


class TestEnergyAwareRouterIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return EnergyAwareRouter

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return dict(router_params())

    @property
    def has_tool_calling(self) -> bool:
        return False  # both candidates are local HuggingFacePipelines, which ignore tools

    @property
    def has_structured_output(self) -> bool:
        return False  # structured output needs tool calling or JSON mode; neither candidate has them

    @property
    def returns_usage_metadata(self) -> bool:
        return True

    @property
    def model_override_value(self) -> str:
        return "tiny-b"
