"""Small helpers the ``energyrouter`` commands share: the parser class, stderr lines, ``NAME=VALUE`` options,
device and model loading, result tables, and the profile ``source`` line."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from langchain_energyrouter.errors import CalibrationError, EnergyRouterError

PROG = "energyrouter"

DEFAULT_MIN_ROWS = 30
"""Outcome rows a model needs in ``train``/``evaluate`` for a per-prompt predictor (``--min-rows``)."""


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- argument helpers -----------------------------------------------------------
def pairs(specs: Sequence[str] | None, what: str) -> dict[str, str]:
    from langchain_energyrouter.calibration.rawdata import parse_name_path

    out: dict[str, str] = {}
    for spec in specs or ():
        name, value = parse_name_path(spec, what)
        out[name] = value
    return out


def number_pairs(specs: Sequence[str] | None, what: str, kind: type) -> dict[str, Any]:
    out = {}
    for name, value in pairs(specs, what).items():
        try:
            out[name] = kind(value)
        except ValueError:
            raise CalibrationError(f"{what} {name}={value!r}: {value!r} is not a valid {kind.__name__}.") from None
    return out


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def load_model(spec: str, device: str, dtype: str) -> tuple[Any, Any, Any]:
    """(resolved, model, tokenizer); any failure becomes one CalibrationError line."""
    try:
        from langchain_energyrouter.models import load_model_and_tokenizer, resolve_model
    except ImportError as err:
        raise CalibrationError(
            f"Cannot load models: {err}. Install with: pip install 'langchain-energyrouter[hf]'"
        ) from err
    try:
        resolved = resolve_model(spec)
        model, tokenizer = load_model_and_tokenizer(resolved, device=device, dtype=dtype)
    except EnergyRouterError:
        raise
    except Exception as err:
        raise CalibrationError(f"Model {spec!r} failed to load: {type(err).__name__}: {err}") from err
    return resolved, model, tokenizer


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def invocation(args: argparse.Namespace) -> str:
    """The command line that is running, for a profile's ``source``."""
    return f"{PROG} {args.command} " + shlex.join(sys.argv[2:] if args.argv is None else args.argv[1:])


def then(source: str, command: str) -> str:
    return f"{source}; then: {command}" if source else command


__all__ = [
    "PROG",
    "Parser",
    "UsageError",
    "invocation",
    "load_model",
    "number_pairs",
    "pairs",
    "resolve_device",
    "say",
    "table",
    "then",
]
