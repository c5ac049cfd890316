"""Measured answer lengths of conversations seen before: a repeat's own length beats any prediction."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import NamedTuple

__all__ = ["REPEAT_LOG_SIGMA", "Repeat", "RepeatLengths"]

REPEAT_LOG_SIGMA = 0.15
"""Spread of ``log1p(tokens)`` between answers to the very same prompt by the same model: the median over
13 open chat models' ten sampled answers per prompt was 0.16 (CASTILLO); greedy decoding repeats exactly."""


class Repeat(NamedTuple):
    """What was measured for one conversation and model."""

    output_tokens: float
    """The (exponentially weighted) mean of the measured lengths."""
    capped: bool
    """Only lengths cut at the cap were seen: a lower bound."""
    n: int
    """Answers measured."""


class RepeatLengths:
    """Measured answer lengths of conversations seen before, per model: bounded (oldest dropped) and thread-safe.

    The same conversation to the same model gives the same answer under greedy decoding, and about the
    same length under sampling; deployments ask templated prompts again and again. A repeat's measured
    length is a better prediction than any model of lengths, so it is used as is (an exponentially weighted
    mean when it varies). Keys say everything that shapes the answer's length: every turn (the system prompt
    and the history too, not only the last question), the tools, the task type and the output cap (see
    :func:`~langchain_energyrouter.router.tokens.conversation_key`); they are short digests, so memory stays
    bounded whatever the prompts' size. A length cut by the cap is only a lower bound: it is kept only where
    nothing longer is known.
    """

    def __init__(self, capacity: int = 10000, weight: float = 0.5) -> None:
        if capacity < 1:
            raise ValueError(f"RepeatLengths(capacity={capacity}); keep at least 1 conversation.")
        self.capacity = capacity
        self.weight = weight
        self._seen: OrderedDict[tuple[str, Hashable], Repeat] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, model: str, conversation: Hashable) -> Repeat | None:
        with self._lock:
            return self._seen.get((model, conversation))

    def put(self, model: str, conversation: Hashable, output_tokens: float, *, capped: bool) -> None:
        key = (model, conversation)
        tokens = float(output_tokens)
        with self._lock:
            old = self._seen.get(key)
            if old is None:
                value = Repeat(tokens, capped, 1)
            elif old.capped and tokens >= old.output_tokens:
                value = Repeat(tokens, capped, old.n + 1)
            elif capped:  # a lower bound: it counts only where it is longer than what is known
                keep = old.output_tokens >= tokens
                value = Repeat(old.output_tokens if keep else tokens, old.capped if keep else True, old.n + 1)
            else:
                value = Repeat(old.output_tokens + self.weight * (tokens - old.output_tokens), False, old.n + 1)
            self._seen[key] = value
            self._seen.move_to_end(key)
            while len(self._seen) > self.capacity:
                self._seen.popitem(last=False)

    def __len__(self) -> int:
        return len(self._seen)
