"""Exceptions raised by langchain-energyrouter.

Every error derives from :class:`EnergyRouterError`, and also from the builtin
that fits, so callers can catch either::

    EnergyRouterError
    ├── ProfileError(ValueError)           a coefficient file is missing, malformed or inconsistent
    ├── WeightsError(ValueError)           weights are negative, non-finite, all zero or unknown
    ├── UnknownModelError(KeyError)        a model name is not among the router's / profile's models
    ├── NoFeasibleModelError(RuntimeError) every candidate was excluded by a constraint
    ├── RoutingError(RuntimeError)         every candidate tried (with fallback) raised
    │   └── CandidatesBusyError            every candidate left was at its caller's limit of requests in flight
    ├── MeterError(RuntimeError)           an energy meter is unavailable or misbehaved
    ├── CalibrationError(RuntimeError)     a calibration run or fit could not proceed
    ├── ModelLoadError(RuntimeError)       a chat model could not be resolved, converted or loaded
    └── StateError(RuntimeError)           the learned-state store is unreadable, corrupt or overloaded

A missing optional dependency raises :class:`MissingExtraError`, an ``ImportError``
that names the extra to install.
"""

from __future__ import annotations

from collections.abc import Mapping


class EnergyRouterError(Exception):
    """Base class of every error this package raises on purpose."""


class ProfileError(EnergyRouterError, ValueError):
    """A profile (coefficient file) is missing, malformed or inconsistent."""


class WeightsError(EnergyRouterError, ValueError):
    """Routing weights are invalid (negative, non-finite, all zero, unknown key)."""


class UnknownModelError(EnergyRouterError, KeyError):
    """A model name is not known to the router or the profile."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class NoFeasibleModelError(EnergyRouterError, RuntimeError):
    """Every candidate was excluded by a constraint.

    Attributes:
        reasons: model name -> why it was excluded.
    """

    def __init__(self, message: str, reasons: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.reasons: dict[str, str] = dict(reasons or {})


class RoutingError(EnergyRouterError, RuntimeError):
    """Every candidate that was tried raised.

    Attributes:
        failures: model name -> the exception it raised, in the order tried.
    """

    def __init__(self, message: str, failures: Mapping[str, BaseException] | None = None) -> None:
        super().__init__(message)
        self.failures: dict[str, BaseException] = dict(failures or {})


class CandidatesBusyError(RoutingError):
    """No candidate could be tried: each one left was refused by the call's admission (its limit of
    requests in flight, e.g. a server's ``max_in_flight``). Retry later.

    Attributes:
        busy: model name -> why it was refused.
    """

    def __init__(
        self,
        message: str,
        busy: Mapping[str, str] | None = None,
        failures: Mapping[str, BaseException] | None = None,
    ) -> None:
        super().__init__(message, failures)
        self.busy: dict[str, str] = dict(busy or {})


class MeterError(EnergyRouterError, RuntimeError):
    """An energy meter is unavailable or returned an unusable reading."""


class CalibrationError(EnergyRouterError, RuntimeError):
    """A calibration run, fit or accuracy scoring could not proceed."""


class ModelLoadError(EnergyRouterError, RuntimeError):
    """A model name or path could not be resolved, converted or loaded."""


class StateError(EnergyRouterError, RuntimeError):
    """The learned-state store cannot be opened, holds a corrupt document, or lost too many write races."""


class MissingExtraError(EnergyRouterError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""


def missing_extra(package: str, extra: str, purpose: str) -> MissingExtraError:
    """Build the error for a missing optional dependency.

    Args:
        package: the importable module that is missing, e.g. ``"pynvml"``.
        extra: the pip extra that installs it, e.g. ``"nvml"``.
        purpose: what it is needed for, e.g. ``"NVML energy metering"``.
    """
    return MissingExtraError(
        f"{purpose} needs the {package!r} package, which is not installed. "
        f"Install it with: pip install 'langchain-energyrouter[{extra}]'"
    )
