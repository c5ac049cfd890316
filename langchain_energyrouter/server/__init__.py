"""OpenAI-compatible routing server (``energyrouter serve``; extra ``serve``: FastAPI, uvicorn, prometheus-client).

:func:`create_app` builds the FastAPI app over an :class:`~langchain_energyrouter.EnergyAwareRouter`;
:func:`~langchain_energyrouter.server.config.load_config` reads ``router.yaml``. FastAPI and
prometheus-client are imported when this package is, so import it only where the server runs.
"""

from __future__ import annotations

from langchain_energyrouter.server.app import ApiError, create_app
from langchain_energyrouter.server.config import (
    AppSettings,
    CandidateConfig,
    ConfigError,
    LimitsConfig,
    ServerConfig,
    build_router,
    load_config,
)

__all__ = [
    "ApiError",
    "AppSettings",
    "CandidateConfig",
    "ConfigError",
    "LimitsConfig",
    "ServerConfig",
    "build_router",
    "create_app",
    "load_config",
]
