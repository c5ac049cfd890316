"""Measured answer lengths of prompts asked before: a repeat's own length beats any prediction."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

__all__ = ["RepeatLengths"]


class RepeatLengths:
    """Measured answer lengths of prompts seen before, per model: bounded (oldest dropped) and thread-safe.

    The same prompt to the same model gives the same answer under greedy decoding, and about the
    same length under sampling; deployments ask templated prompts again and again. A repeated
    prompt's measured length is a better prediction than any model of lengths, so it is used as is
    (an exponentially weighted mean when it varies). Keys are the prompt's feature vector, so
    anything that changes the features (text, task type, token count) is a new prompt. A length cut
    by the cap is only a lower bound: it is kept only where nothing longer is known.
    """

    def __init__(self, capacity: int = 10000, weight: float = 0.5) -> None:
        if capacity < 1:
            raise ValueError(f"RepeatLengths(capacity={capacity}); keep at least 1 prompt.")
        self.capacity = capacity
        self.weight = weight
        self._seen: OrderedDict[tuple[str, int], tuple[float, bool]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(model: str, context: Sequence[float]) -> tuple[str, int]:
        return model, hash(tuple(context))

    def get(self, model: str, context: Sequence[float]) -> float | None:
        with self._lock:
            found = self._seen.get(self.key(model, context))
        return None if found is None else found[0]

    def put(self, model: str, context: Sequence[float], output_tokens: float, *, capped: bool) -> None:
        key = self.key(model, context)
        with self._lock:
            old = self._seen.get(key)
            if old is None or (old[1] and output_tokens >= old[0]):
                value = (float(output_tokens), capped)
            elif capped:
                value = old if old[0] >= output_tokens else (float(output_tokens), True)
            else:
                value = (old[0] + self.weight * (float(output_tokens) - old[0]), False)
            self._seen[key] = value
            self._seen.move_to_end(key)
            while len(self._seen) > self.capacity:
                self._seen.popitem(last=False)

    def __len__(self) -> int:
        return len(self._seen)
