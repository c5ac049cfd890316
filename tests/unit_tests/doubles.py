"""Test doubles shared by several test files: real LangChain chat models with behaviour tests need."""

from __future__ import annotations

import threading
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult


class GatedChatModel(BaseChatModel):
    """Answers ``"from <model_id>"`` once ``gate`` opens: holds a request in flight for as long as a test needs.

    Every call releases ``entered`` first, so a test can wait until the call is in flight
    (``entered.acquire(timeout=...)``). No installable model can be held mid-answer on demand.
    """

    gate: Any
    """A ``threading.Event`` the answer waits for."""
    entered: Any
    """A ``threading.Semaphore(0)`` released as each call begins."""
    model_id: str = "gated"
    timeout_s: float = 30.0

    @property
    def _llm_type(self) -> str:
        return "gated"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.entered.release()
        if not self.gate.wait(self.timeout_s):
            raise TimeoutError("gate never opened")
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=f"from {self.model_id}"))])


def gated(model_id: str, gate: threading.Event | None = None) -> GatedChatModel:
    """A :class:`GatedChatModel` with its own gate (unless one is shared) and its own entry semaphore."""
    return GatedChatModel(gate=gate or threading.Event(), entered=threading.Semaphore(0), model_id=model_id)
