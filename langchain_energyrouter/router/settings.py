"""The router's settings: what its constructor, assignments and calls accept, and how they are read.

* :data:`ROUTING_OPTIONS` are per-call options: call keywords, ``.bind(...)`` keywords, or
  ``config["configurable"]["<prefix>_<option>"]`` (:func:`configured_options`).
* ``profile=`` takes an energy profile for backward compatibility (:func:`energy_profile_keyword`);
  ``router.profile`` itself is LangChain's capability profile (:func:`capability_profile_only`).
* :class:`RouterSettings` is what the router's parts (:class:`~langchain_energyrouter.router.parts.RouterParts`)
  are built from: the fields of ``EnergyAwareRouter``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol

from langchain_energyrouter.profile import EnergyProfile

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from langchain_energyrouter.decide.exploration import ExplorationOptions
    from langchain_energyrouter.decide.scoring import Constraints, Normalizer, Weights
    from langchain_energyrouter.energy.base import EnergyMeter
    from langchain_energyrouter.learn.options import OnlineOptions

__all__ = [
    "DEFAULT_CONFIG_PREFIX",
    "ROUTING_OPTIONS",
    "RUN_ID_KEYWORD",
    "RouterSettings",
    "capability_profile_only",
    "configured_options",
    "energy_profile_keyword",
    "is_energy_profile",
]

ROUTING_OPTIONS = ("weights", "model", "constraints", "task_type", "exclude")
"""Per-call options: call keywords, ``.bind(...)``, or ``config["configurable"]["<prefix>_<option>"]``."""

RUN_ID_KEYWORD = "energyrouter_run_id"
"""The run's id, handed from ``invoke``/``stream`` (and their async forms) to ``_plan``: LangChain calls
``_stream`` without the run manager, so a streamed answer would otherwise have no run id to take feedback."""

DEFAULT_CONFIG_PREFIX = "energyrouter"
"""Prefix of the router's ``configurable`` keys: ``energyrouter_weights``, ``energyrouter_model``, ..."""


class RouterSettings(Protocol):
    """The router settings a :class:`RouterParts` is built from (the fields of ``EnergyAwareRouter``)."""

    models: dict[str, BaseChatModel]
    energy_profile: EnergyProfile
    weights: Weights
    normalization: str | Normalizer | None
    constraints: Constraints
    pareto: bool
    on_infeasible: Literal["raise", "least_violating"]
    meter: EnergyMeter | None
    local_models: list[str] | None
    tool_models: list[str] | None
    learn: bool
    learn_in_background: bool
    state_store: Any
    online_options: OnlineOptions | None
    prompt_routing: Any
    engine_metrics: dict[str, str] | None
    constraint_quantile: float
    exploration: ExplorationOptions | None
    decision_log: Any

    def own_settings(self) -> tuple[Any, ...]:
        """The values the parts were built from (compared by identity to detect a change)."""
        ...


def default_normalization(normalization: str | Normalizer | None, prompt_routing: Any) -> str | Normalizer:
    """The normaliser a router uses: the one given, else ``"relative"`` with per-prompt routing, else ``"minmax"``.

    Min-max turns any difference between two candidates into 0 or 1, so a per-prompt prediction that one
    model is a little likelier to be right would count as much as a large one; relative keeps its size.
    """
    if normalization is not None:
        return normalization
    return "relative" if prompt_routing is not None else "minmax"


def configured_options(configurable: Mapping[str, Any] | None, prefix: str) -> dict[str, Any]:
    """The routing options set in ``configurable`` under ``<prefix>_<option>`` keys."""
    if not configurable:
        return {}
    return {key: configurable[f"{prefix}_{key}"] for key in ROUTING_OPTIONS if f"{prefix}_{key}" in configurable}


def is_energy_profile(value: Any) -> bool:
    """An energy profile, the path of one, or its dict (not LangChain's capability ``ModelProfile``)."""
    return isinstance(value, (EnergyProfile, str, os.PathLike)) or (isinstance(value, Mapping) and "models" in value)


def energy_profile_keyword(data: Any) -> Any:
    """The constructor's keywords with ``profile=<energy profile or path>`` moved to ``energy_profile``.

    Raises:
        ValueError: both are given, or ``profile`` is neither kind of profile while ``energy_profile`` is unset.
    """
    if isinstance(data, Mapping) and is_energy_profile(data.get("profile")):
        if data.get("energy_profile") is not None:
            raise ValueError(
                "profile was given an energy profile while energy_profile is set too: the energy profile "
                "goes in energy_profile= (router.energy_profile = ... to change it); profile is LangChain's "
                "capability profile, a dict."
            )
        data = {**data, "energy_profile": data["profile"]}
        del data["profile"]
    elif isinstance(data, Mapping) and data.get("energy_profile") is None and "profile" in data:
        raise ValueError(
            f"profile={data['profile']!r} is not an energy profile (an EnergyProfile, the path of a profile "
            "JSON, or its dict with 'models'); pass the energy profile as energy_profile=."
        )
    return data


def capability_profile_only(value: Any) -> Any:
    """``router.profile`` as given, refusing an energy profile (it belongs in ``energy_profile``)."""
    if is_energy_profile(value):
        raise ValueError(
            "router.profile is LangChain's capability profile (a dict); to change the energy profile, "
            "assign router.energy_profile instead."
        )
    return value
