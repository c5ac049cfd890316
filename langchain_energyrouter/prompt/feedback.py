"""Feedback on routed answers: which run got which estimate, and scores forwarded from LangSmith.

:class:`FeedbackBook` remembers, per run id, the model that answered and the per-prompt estimate it was
chosen on, so a score that arrives later (``router.feedback(run_id, score)``) teaches the right arm with
the right context, once: the first score of a run is learned, later ones are refused (``"already_scored"``),
so replaying one run's feedback cannot drag the estimates of every prompt. :func:`forward_feedback` passes
LangSmith feedback objects on.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Generic, Literal, Protocol, TypeVar

__all__ = [
    "FEEDBACK_LOG",
    "MAX_FEEDBACK_KEY_CHARS",
    "FeedbackBook",
    "FeedbackOutcome",
    "FeedbackTarget",
    "forward_feedback",
]

FEEDBACK_LOG = "feedback"
"""Store event log of the feedback rows learned from (run id, model, score, context): one per run."""

MAX_FEEDBACK_KEY_CHARS = 256
"""Longest feedback ``key`` (a name such as ``"correctness"``), characters."""

FeedbackOutcome = Literal["learned", "unknown_run", "already_scored", "not_learned"]
"""What became of a score: learned; its run is not remembered (never seen, or dropped from the bounded book);
its run was scored before (the first score wins); or the state store failed (a later score may be learned)."""

E = TypeVar("E")


class FeedbackTarget(Protocol):
    """What learns from a score (:class:`~langchain_energyrouter.prompt.routing.PromptRouting`)."""

    def feedback(self, run_id: str, score: float, *, key: str | None = None) -> bool:
        """Learn that the answer of ``run_id`` scored ``score`` (0 to 1); False for a run not remembered or
        scored before (each run learns from its first score only)."""
        ...


@dataclass(frozen=True)
class _Run(Generic[E]):
    model: str
    estimate: E
    scored: bool = False


class FeedbackBook(Generic[E]):
    """Run id -> (estimate, model chosen, scored yet), bounded (oldest dropped first) and thread-safe."""

    def __init__(self, capacity: int = 10000) -> None:
        if capacity < 1:
            raise ValueError(f"FeedbackBook(capacity={capacity}); keep at least 1 run.")
        self.capacity = capacity
        self._runs: OrderedDict[str, _Run[E]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, run_id: str, model: str, estimate: E) -> None:
        with self._lock:
            self._runs[run_id] = _Run(model, estimate)
            self._runs.move_to_end(run_id)
            while len(self._runs) > self.capacity:
                self._runs.popitem(last=False)

    def get(self, run_id: str) -> _Run[E] | None:
        with self._lock:
            return self._runs.get(run_id)

    def claim(self, run_id: str) -> _Run[E] | Literal["unknown_run", "already_scored"]:
        """The run, now marked scored; or why it cannot take a score (one claim per run wins, across threads)."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                return "unknown_run"
            if run.scored:
                return "already_scored"
            self._runs[run_id] = replace(run, scored=True)
            return run

    def release(self, run_id: str) -> None:
        """Undo :meth:`claim` (the score could not be learned, so a later one may be)."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is not None:
                self._runs[run_id] = replace(run, scored=False)

    def __len__(self) -> int:
        return len(self._runs)


def forward_feedback(routing: FeedbackTarget, feedback: Iterable[Any], *, key: str | None = None) -> int:
    """Pass LangSmith-style feedback objects (``.run_id``, ``.score``, ``.key``) to :meth:`PromptRouting.feedback`.

    LangSmith feedback is created after a run, by a person or an evaluator, through the
    LangSmith client; no LangChain callback fires for it, so a callback handler cannot
    receive it. Read it with ``Client().list_feedback(run_ids=..., feedback_key=[...])``
    and forward it here. Scores outside [0, 1] or missing are skipped. A run learns from its
    first score only: where runs carry several feedback keys, pass ``key`` to pick the one.

    Returns:
        How many feedback rows the bandit learned from.
    """
    learned = 0
    for item in feedback:
        if key is not None and getattr(item, "key", None) != key:
            continue
        score = getattr(item, "score", None)
        if isinstance(score, bool):
            score = float(score)
        if not isinstance(score, (int, float)) or not 0.0 <= score <= 1.0:
            continue
        learned += routing.feedback(str(item.run_id), float(score), key=getattr(item, "key", None))
    return learned
