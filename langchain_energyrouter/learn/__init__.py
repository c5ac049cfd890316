"""Learning from every measured call: runtime, joules and answer length per model, shared through the store.

Belongs here: the online learners (:mod:`~langchain_energyrouter.learn.linear` for runtime and joules,
:mod:`~langchain_energyrouter.learn.length` for answer length, :mod:`~langchain_energyrouter.learn.costs` routing a
measurement to them, :mod:`~langchain_energyrouter.learn.options` their tuning), the loop that shares what they
learned through the state store and installs it in the scheduler (:mod:`~langchain_energyrouter.learn.loop`), and
learning off the request path (:mod:`~langchain_energyrouter.learn.background`).

Does not belong here: per-prompt learning (``prompt/``: the bandit and answer lengths per prompt), the stores
themselves (``state/``), and no LangChain, numpy, pandas, torch or transformers: an update costs microseconds.
"""

from __future__ import annotations

from langchain_energyrouter.learn.background import BackgroundLearning
from langchain_energyrouter.learn.costs import CostLearner, LearnedCosts
from langchain_energyrouter.learn.length import OutputLengthLearner
from langchain_energyrouter.learn.linear import LinearCostLearner
from langchain_energyrouter.learn.loop import LearningLoop
from langchain_energyrouter.learn.options import OnlineOptions

__all__ = [
    "BackgroundLearning",
    "CostLearner",
    "LearnedCosts",
    "LearningLoop",
    "LinearCostLearner",
    "OnlineOptions",
    "OutputLengthLearner",
]
