"""langchain-energyrouter: energy-aware routing of LangChain chat requests across HuggingFace models."""

from __future__ import annotations

from importlib import metadata

from langchain_energyrouter.errors import (
    CalibrationError,
    EnergyRouterError,
    MeterError,
    MissingExtraError,
    ModelLoadError,
    NoFeasibleModelError,
    ProfileError,
    RoutingError,
    UnknownModelError,
    WeightsError,
)
from langchain_energyrouter.profile import (
    CostModel,
    DeviceInfo,
    EnergyProfile,
    FitStats,
    ModelProfile,
    OutputLengthModel,
)
from langchain_energyrouter.scheduler import Candidate, Decision, Scheduler
from langchain_energyrouter.scoring import NORMALIZERS, PRESETS, Constraints, Weights

# The LangChain-facing parts load on first use, so the scheduler stays importable
# without langchain-core, torch or transformers being imported.
_LAZY = {
    "EnergyAwareRouter": "langchain_energyrouter.router",
    "EnergyCallbackHandler": "langchain_energyrouter.callbacks",
    "get_energy_callback": "langchain_energyrouter.callbacks",
    "default_meter": "langchain_energyrouter.energy",
    "load_chat_model": "langchain_energyrouter.models",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'langchain_energyrouter' has no attribute {name!r}")


try:
    __version__ = metadata.version("langchain-energyrouter")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = [
    "NORMALIZERS",
    "PRESETS",
    "CalibrationError",
    "Candidate",
    "Constraints",
    "CostModel",
    "Decision",
    "DeviceInfo",
    "EnergyAwareRouter",
    "EnergyCallbackHandler",
    "EnergyProfile",
    "EnergyRouterError",
    "FitStats",
    "MeterError",
    "MissingExtraError",
    "ModelLoadError",
    "ModelProfile",
    "NoFeasibleModelError",
    "OutputLengthModel",
    "ProfileError",
    "RoutingError",
    "Scheduler",
    "UnknownModelError",
    "Weights",
    "WeightsError",
    "__version__",
    "default_meter",
    "get_energy_callback",
    "load_chat_model",
]
