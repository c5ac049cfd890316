"""Prompt features for per-prompt routing: one vector of a prompt's embedding, cheap complexity scalars
(token count, digits) and the caller's task type (:class:`FeatureSpace`).

The embedding comes from a :mod:`~langchain_energyrouter.prompt.encoders` encoder; numpy is imported here (never by the
scheduler), and an encoder's data is loaded only when a router is configured to use prompt features.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from langchain_energyrouter.prompt.encoders import WORD, PromptEncoder

if TYPE_CHECKING:
    from numpy.typing import NDArray

    FloatArray = NDArray[np.float32]

__all__ = ["SCALAR_FEATURES", "FeatureSpace", "scalar_features"]

SCALAR_FEATURES = ("log_input_tokens", "digit_share", "longest_number")
"""Cheap complexity features appended to the embedding, in this order."""

_NUMBER = re.compile(r"[0-9]+")


def scalar_features(prompt: str, input_tokens: int | None) -> tuple[float, float, float]:
    """``(log1p(tokens) / 8, share of digit characters, digits of the longest number / 10)``.

    ``input_tokens`` None: counted as words and punctuation marks.
    """
    tokens = input_tokens if input_tokens is not None else len(WORD.findall(prompt))
    lengths = [len(n) for n in _NUMBER.findall(prompt)]  # one regex pass: a per-character loop costs 50 us
    digits, longest = (sum(lengths), max(lengths)) if lengths else (0, 0)
    return math.log1p(max(tokens, 0)) / 8.0, digits / max(len(prompt), 1), longest / 10.0


class FeatureSpace:
    """Turns ``(prompt, input_tokens, task_type)`` into one vector: embedding, scalars, task one-hot.

    Args:
        encoder: the sentence encoder.
        task_types: the task types seen in training (others, and None, get no one-hot).
    """

    def __init__(self, encoder: PromptEncoder, task_types: Sequence[str] = ()) -> None:
        self.encoder = encoder
        self.task_types = tuple(task_types)
        self._task_index = {t: i for i, t in enumerate(self.task_types)}
        self.dim = encoder.dim + len(SCALAR_FEATURES) + len(self.task_types)

    def vector(self, prompt: str, input_tokens: int | None, task_type: str | None) -> FloatArray:
        """The feature vector (float32, length :attr:`dim`)."""
        out = np.zeros(self.dim, dtype=np.float32)
        d = self.encoder.dim
        out[:d] = self.encoder.encode(prompt)
        out[d : d + len(SCALAR_FEATURES)] = scalar_features(prompt, input_tokens)
        index = self._task_index.get(task_type) if task_type is not None else None
        if index is not None:
            out[d + len(SCALAR_FEATURES) + index] = 1.0
        return out

    def matrix(self, rows: Sequence[tuple[str, int | None, str | None]]) -> FloatArray:
        """Stacked :meth:`vector` of ``(prompt, input_tokens, task_type)`` rows."""
        out = np.zeros((len(rows), self.dim), dtype=np.float32)
        for i, (prompt, tokens, task) in enumerate(rows):
            out[i] = self.vector(prompt, tokens, task)
        return out
