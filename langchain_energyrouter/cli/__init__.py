"""The ``energyrouter`` command: :func:`main` assembles the parser, one module per subcommand.

Belongs here: argument parsing and printing for each subcommand (``calibrate``, ``fit``, ``accuracy``,
``explain``, ``plot``, ``state``, ``serve``, ``evaluate``, ``train``, ``replay``, ``demo``) and what they share
(:mod:`~langchain_energyrouter.cli.util`). Heavy packages are imported inside the commands that need them, so
``energyrouter --help`` stays fast.

Does not belong here: the work itself (``calibration/`` measures and fits, ``server/`` serves, ``router/``
routes); a command reads its arguments, calls that code and prints.
"""

from __future__ import annotations

from langchain_energyrouter.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
