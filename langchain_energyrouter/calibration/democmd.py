"""``energyrouter demo ...``: run the demo (``langchain_energyrouter.demo``); every argument is the demo's own."""

from __future__ import annotations

import argparse
from typing import Any

from langchain_energyrouter.errors import CalibrationError


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``demo`` (its ``--help`` and options belong to the demo)."""
    p = sub.add_parser("demo", parents=[common], help="run the demo (langchain_energyrouter.demo)", add_help=False)
    p.add_argument("demo_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import importlib

    try:
        demo = importlib.import_module("langchain_energyrouter.demo")
    except ModuleNotFoundError as err:
        if err.name != "langchain_energyrouter.demo":
            raise
        raise CalibrationError(
            "The demo is not available in this version (langchain_energyrouter.demo is missing)."
        ) from None
    return int(demo.main(args.demo_args) or 0)


__all__ = ["add_parser", "run"]
