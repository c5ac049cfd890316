"""``energyrouter replay --raw NAME=PATH ...``: replay raw traces through the online learner, static prior vs
online."""

from __future__ import annotations

import argparse
from typing import Any

from langchain_energyrouter.cli.util import pairs, say


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``replay``."""
    p = sub.add_parser(
        "replay",
        parents=[common],
        help="replay raw traces through the online learner: static prior vs online",
        description="Fit the prior on the first rows of each trace, then predict every later row before "
        "seeing it (static prior and online learner) and learn from it; print MAPE and bias of both.",
    )
    p.add_argument("--raw", action="append", required=True, metavar="NAME=PATH", help="a model's raw CSV (.csv.gz ok)")
    p.add_argument(
        "--prior-fraction", type=float, default=0.2, help="share of each trace's first rows the prior is fitted on"
    )
    p.add_argument(
        "--energy-method",
        default="nvml_poll",
        choices=["nvml_counter", "nvml_poll", "rapl", "estimate", "none"],
        help="the rows' energy method when a file has no energy_method column (default nvml_poll)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from langchain_energyrouter.calibration.progress import Progress
    from langchain_energyrouter.calibration.rawdata import read_raw
    from langchain_energyrouter.calibration.replay import as_json, render_table, replay_trace

    raws = pairs(args.raw, "--raw")
    read = {name: read_raw(path, warn=say) for name, path in raws.items()}
    results = {}
    for name, raw in read.items():
        bars: list[Progress] = []  # drawn from the first replayed rows on: a bad split errors before any bar

        def advance(rows: int, name: str = name, total: int = len(raw.frame), bars: list[Progress] = bars) -> None:
            if not bars:
                bars.append(Progress(total - int(args.prior_fraction * total), f"{name} replay"))
            bars[0].update(rows)

        try:
            results[name] = replay_trace(
                name, raw, prior_fraction=args.prior_fraction, energy_method=args.energy_method, on_rows=advance
            )
        finally:
            for bar in bars:
                bar.close()
    if args.json:
        print(json.dumps(as_json(results), indent=2))
    else:
        print(render_table(results))
    return 0


__all__ = ["add_parser", "run"]
