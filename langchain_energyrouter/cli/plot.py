"""``energyrouter plot --profile P --out DIR``: write PNG plots of a profile."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from langchain_energyrouter.cli.util import pairs, say
from langchain_energyrouter.decide.scoring import NORMALIZERS
from langchain_energyrouter.profile import EnergyProfile


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``plot``."""
    p = sub.add_parser(
        "plot",
        parents=[common],
        help="write PNG plots of a profile",
        description="Write PNG plots of a profile into a directory: the accuracy/energy/runtime trade-off, "
        "which model wins as each weight grows (sensitivity), dominance regions, and with --raw the fits' "
        "predictions against their measurements (fit diagnostics).",
    )
    p.add_argument("--profile", required=True, help="profile JSON")
    p.add_argument("--out", required=True, help="directory for the PNGs")
    p.add_argument("--raw", action="append", metavar="NAME=PATH", help="raw CSVs for fit diagnostics")
    p.add_argument("--prompt-tokens", type=int, default=32, help="prompt length for the trade-off plots (default 32)")
    p.add_argument("--normalization", default="minmax", choices=sorted(NORMALIZERS), help="default: minmax")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from langchain_energyrouter.calibration.plots import write_plots

    profile = EnergyProfile.load(args.profile)
    raws = pairs(args.raw, "--raw")
    for name in raws:
        profile.model(name)
    written = write_plots(
        profile,
        Path(args.out),
        raws=raws,
        prompt_tokens=args.prompt_tokens,
        normalization=args.normalization,
        warn=say,
    )
    for path in written:
        print(path)
    return 0


__all__ = ["add_parser", "run"]
