"""Deciding one call: candidates' predicted costs and accuracy, weighed and constrained (the hot path).

Belongs here: the :class:`~langchain_energyrouter.decide.scheduler.Scheduler` (``decide(...) -> Decision``) and
what it scores with (:mod:`~langchain_energyrouter.decide.scoring`: weights, normalisers, constraints, the Pareto
filter). Pure and fast: the standard library and pydantic only, microseconds per decision.

Does not belong here: anything that runs a model, measures, learns or reads a prompt (those hand the scheduler
plain numbers: token counts, in-flight load, per-prompt estimates, learned snapshots), and no LangChain, numpy,
pandas, torch or transformers (a test fences this package).
"""

from __future__ import annotations

from langchain_energyrouter.decide.scheduler import Candidate, Decision, Scheduler
from langchain_energyrouter.decide.scoring import NORMALIZERS, PRESETS, Constraints, Weights

__all__ = ["NORMALIZERS", "PRESETS", "Candidate", "Constraints", "Decision", "Scheduler", "Weights"]
