"""The LangChain chat model that routes: from a call's messages to a decision, an answer and its measurement.

Belongs here: :class:`~langchain_energyrouter.router.chat_model.EnergyAwareRouter` (LangChain's face: settings,
identity, config lifting) and what one call goes through, in order: its settings
(:mod:`~langchain_energyrouter.router.settings`) and the parts built from them
(:mod:`~langchain_energyrouter.router.parts`); planning the call (:mod:`~langchain_energyrouter.router.call`:
token counts per candidate from :mod:`~langchain_energyrouter.router.tokens`, the prompt's estimate, load from
:mod:`~langchain_energyrouter.router.live` and :mod:`~langchain_energyrouter.router.inflight`, then the scheduler);
running it (:mod:`~langchain_energyrouter.router.execution`, with
:mod:`~langchain_energyrouter.router.local_stream` and :mod:`~langchain_energyrouter.router.chunks`); and
candidate introspection (:mod:`~langchain_energyrouter.router.candidates`).

Does not belong here: the decision itself (``decide/``), meters (``energy/``), learning (``learn/``, ``prompt/``),
serving (``server/``) or agent middleware (``middleware.py``), which use this package, never the reverse.
"""

from __future__ import annotations

from langchain_energyrouter.router.call import Admission, RoutedCall
from langchain_energyrouter.router.chat_model import EnergyAwareRouter
from langchain_energyrouter.router.execution import FLAG_CACHE_HIT
from langchain_energyrouter.router.settings import DEFAULT_CONFIG_PREFIX, ROUTING_OPTIONS

__all__ = ["DEFAULT_CONFIG_PREFIX", "FLAG_CACHE_HIT", "ROUTING_OPTIONS", "Admission", "EnergyAwareRouter", "RoutedCall"]
