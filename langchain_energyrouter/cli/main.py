"""The ``energyrouter`` command: calibrate, fit, accuracy, explain, plot, state, serve, report, evaluate, train, replay,
demo.

This module only assembles the parser and runs a command; each command lives in a
module of its own (``calibrate``, ``fit``, ``accuracy``, ``explain``,
``plot``, ``state``, ``serve``, ``report``, ``evaluate``, ``train``, ``replay``,
``demo``), each exposing ``add_parser(sub, common)`` and ``run(args)``.

``main(argv) -> int``: 0 on success, 1 on any error (printed as one line on
stderr; ``--debug`` shows the traceback instead). Heavy packages (pandas,
statsmodels, torch, transformers, matplotlib) are imported inside the commands
that need them, so ``energyrouter --help`` stays fast.

Examples::

    energyrouter calibrate smollm2-135m gemma3-270m --out profile.json --max-minutes 5
    energyrouter fit --raw phi-3-mini=phi3.csv.gz --accuracy phi-3-mini=0.685 --out profile.json
    energyrouter accuracy --profile profile.json --suite calibration/suites/qa-small.jsonl smollm2-135m
    energyrouter explain --profile profile.json --weights energy-first "What is 2 + 2?"
    energyrouter plot --profile profile.json --out plots/
"""

from __future__ import annotations

import argparse
import sys

from langchain_energyrouter.cli import (
    accuracy,
    calibrate,
    demo,
    evaluate,
    explain,
    fit,
    plot,
    replay,
    report,
    serve,
    state,
    train,
)
from langchain_energyrouter.cli.util import PROG, Parser, UsageError, say
from langchain_energyrouter.errors import EnergyRouterError
from langchain_energyrouter.files import package_version


# -- parser ---------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The ``energyrouter`` parser: each command's module registers its own sub-parser, in ``--help`` order."""
    common = Parser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks instead of one-line errors"
    )
    parser = Parser(prog=PROG, description="Calibrate, fit, inspect and plot energy-router profiles.", parents=[common])
    parser.add_argument("--version", action="version", version=f"{PROG} {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    calibrate.add_parser(sub, common)
    fit.add_parser(sub, common)
    accuracy.add_parser(sub, common)
    explain.add_parser(sub, common)
    plot.add_parser(sub, common)
    state.add_parser(sub, common)
    serve.add_parser(sub, common)
    report.add_parser(sub, common)
    evaluate.add_parser(sub, common)
    train.add_parser(sub, common)
    replay.add_parser(sub, common)
    demo.add_parser(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``energyrouter`` command; return the exit status."""
    parser = build_parser()
    given = sys.argv[1:] if argv is None else list(argv)
    try:
        if given[:1] == ["demo"]:  # everything after `demo` is the demo's own (its --help included)
            args = argparse.Namespace(command="demo", demo_args=given[1:], func=demo.run_command)
        else:
            args = parser.parse_args(given)
    except UsageError as err:
        say(f"{PROG}: error: {err}")
        return 1
    except SystemExit as exit_:  # --help
        return int(exit_.code or 0)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 1
    args.argv = argv
    try:
        return int(args.func(args) or 0)
    except SystemExit as exit_:  # a delegated parser (the demo's) exiting on --help or bad options
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except KeyboardInterrupt:
        say(f"{PROG} {args.command}: interrupted; rows measured so far are kept, rerun the command to resume")
        return 130
    except Exception as err:
        if getattr(args, "debug", False):
            raise
        known = isinstance(err, (EnergyRouterError, OSError, ValueError, ImportError))
        text = " ".join(str(err).split()) or type(err).__name__
        hint = "" if known else f" ({type(err).__name__}; rerun with --debug for the traceback)"
        say(f"{PROG} {args.command}: error: {text}{hint}")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
