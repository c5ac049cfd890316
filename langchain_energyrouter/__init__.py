"""langchain-energyrouter: energy-aware routing of LangChain chat requests across HuggingFace models."""

from __future__ import annotations

from importlib import metadata

from langchain_energyrouter.errors import (
    CalibrationError,
    EnergyRouterError,
    MeterError,
    MissingExtraError,
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
    "EnergyProfile",
    "EnergyRouterError",
    "FitStats",
    "MeterError",
    "MissingExtraError",
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
]
