"""``python -m langchain_energyrouter.calibration``: the ``energyrouter`` command."""

import sys

from langchain_energyrouter.cli import main

sys.exit(main())
