"""``python -m langchain_energyrouter.cli``: the ``energyrouter`` command."""

import sys

from langchain_energyrouter.cli.main import main

sys.exit(main())
