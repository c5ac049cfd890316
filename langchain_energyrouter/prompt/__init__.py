"""Reading the prompt: per-prompt answer length and quality for each candidate, learned online from feedback.

Belongs here: prompt encoders and features (:mod:`~langchain_energyrouter.prompt.encoders`,
:mod:`~langchain_energyrouter.prompt.features`), the trained predictor with its file and its training beside it
(:mod:`~langchain_energyrouter.prompt.predictor`, :mod:`~langchain_energyrouter.prompt.predictor_file`,
:mod:`~langchain_energyrouter.prompt.training`), the contextual bandit (:mod:`~langchain_energyrouter.prompt.bandit`),
feedback bookkeeping, remembered repeats, and :class:`~langchain_energyrouter.prompt.routing.PromptRouting`, the
one object a router holds.

Does not belong here: deciding (``decide/`` takes the estimates as plain dicts), running models. Imported lazily:
a router loads it only when ``prompt_routing`` is set; numpy at import, never pandas or torch (distilling the
``minilm-static`` table imports torch inside that function).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langchain_energyrouter.prompt.predictor import PromptPredictor
    from langchain_energyrouter.prompt.routing import PromptEstimate, PromptRouting

_LAZY = {"PromptEstimate": "routing", "PromptPredictor": "predictor", "PromptRouting": "routing"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["PromptEstimate", "PromptPredictor", "PromptRouting"]
