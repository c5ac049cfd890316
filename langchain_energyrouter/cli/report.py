"""``energyrouter report LOG [--plot out.png] [--json]``: look back on a decision log.

See :mod:`langchain_energyrouter.calibration.decision_report` for the figures.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from langchain_energyrouter.cli.util import say
from langchain_energyrouter.errors import missing_extra


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``report``."""
    p = sub.add_parser(
        "report",
        parents=[common],
        help="look back on a decision log: share per model, prediction error, energy vs counterfactuals",
        description="Read the JSONL decision log a router wrote (decision_log= / `serve --decision-log PATH`) and "
        "print, over the whole log and per time bin: the share of calls per model, the prediction error of answer "
        "length, runtime and energy (median absolute % error and bias = summed predictions / summed measurements), "
        "the energy measured and predicted against the predicted counterfactuals 'always the most accurate model' "
        "and 'always the cheapest', exploration spent and feedback. Lines a crash cut short are skipped and counted.",
    )
    p.add_argument(
        "log", nargs="+", metavar="LOG", help="decision log(s): the file and, to include them, its rotated PATH.1, ..."
    )
    p.add_argument("--plot", metavar="OUT.png", help="also write the figures as a PNG (needs the calibrate extra)")
    p.add_argument("--bins", type=int, help="time bins (default: one per 25 calls, 1 to 12)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON instead of the table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from langchain_energyrouter.calibration.decision_report import build_report, format_report, read_decision_log

    data = read_decision_log(args.log)
    report = build_report(data, bins=args.bins)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    for line in data.skipped[:3]:
        say(f"skipped {line}")
    if args.plot:
        from langchain_energyrouter.calibration.decision_plot import plot_report

        try:
            import matplotlib  # noqa: F401
        except ImportError as err:
            raise missing_extra("matplotlib", "calibrate", "`energyrouter report --plot`") from err
        say(f"wrote {plot_report(data, report, Path(args.plot))}")
    return 0


__all__ = ["add_parser", "run"]
