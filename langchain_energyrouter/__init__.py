"""langchain-energyrouter: energy-aware routing of LangChain chat requests across HuggingFace models.

The stages, in the order a request meets them (each package's docstring says what belongs there)::

    profile.py, cost.py     the profile contract: per-model cost models, accuracy, load models (+ errors.py, files.py)
        |
    prompt/                 reading the prompt: per-prompt answer length and quality, feedback (lazily imported)
    learn/                  learning from every measured call: costs and lengths, shared through state/
        |
    decide/                 the scheduler: weights, normalisers, constraints -> a Decision (pure, microseconds)
        |
    router/                 the LangChain chat model: plan a call (tokens, load, estimate), run it, dress the answer
        |
    middleware.py, server/  agents (create_agent) and the OpenAI-compatible server over the router
    cli/                    the `energyrouter` command
    energy/                 meters (NVML, RAPL, estimate) and metering windows; callbacks.py sums what they measured
    state/                  where learned state lives: memory, SQLite, Redis
    calibration/            offline: measure, fit profiles, score, train predictors, evaluate, replay
    models.py               loading models by name (packaged_models.py: the packaged ones; model_cache.py)
    testing/                public test fakes and a local engine

Who imports whom (``tools/check_layout.py`` checks it, with no cycle allowed): ``decide/`` only the contract;
``learn/`` the contract, ``decide/``, ``energy/`` and ``state/``; ``prompt/`` the contract and ``state/``;
``router/`` all of those; ``middleware.py`` and ``server/`` the router; ``cli/`` everything. ``energy/`` and
``state/`` are leaves, and ``calibration/`` never imports ``router/``, ``server/`` or ``cli/``.
"""

from __future__ import annotations

from langchain_energyrouter.decide.scheduler import Candidate, Decision, Scheduler
from langchain_energyrouter.decide.scoring import NORMALIZERS, PRESETS, Constraints, Weights
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
from langchain_energyrouter.files import package_version
from langchain_energyrouter.profile import (
    CostModel,
    DeviceInfo,
    EnergyProfile,
    FitStats,
    ModelProfile,
    OutputLengthModel,
)

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


__version__ = package_version()

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
