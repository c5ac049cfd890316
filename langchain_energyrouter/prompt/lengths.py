"""Per-prompt answer length: each model's length distribution for *this* prompt (inference; numpy).

One prompt representation is shared by every model, and each model keeps its own verbosity::

    log1p(tokens of model m on prompt p) ~ Normal(mu[m, t] , sigma[m, t]),
    mu[m, t] = offset[m, t] + x_p . W[m, t]

``x_p`` (:class:`LengthFeatures`) is the prompt's embedding (the predictor's encoder), the lexical cues users
write (:mod:`~langchain_energyrouter.prompt.cues`: "in one word", "list 5", "write an essay", code) and the
prompt's length in tokens (the whole conversation's); ``t`` is the caller's task type, or none. ``W[m, t]``
sums what all models share, what a task adds, and the model's own deviations from both (a kernel ridge fit,
:mod:`~langchain_energyrouter.prompt.length_training`); ``offset[m, t]`` is the model's mean log length on
the task, shrunk toward its overall mean. Where cross-validation found that the prompt does not help a model,
its lengths are its per-task means alone (``form == "task"``). A request without a task type is given the
likeliest task (a ridge classifier on the same vector), since the task terms carry much of the signal. The median,
the upper quantile and the mean are calibrated on held-out prompts
(:mod:`~langchain_energyrouter.prompt.length_calibration`), so the quantiles hold and the means add up to the
measured total.

Prediction is one matrix-vector product per call (a few microseconds for 16 models) after the prompt's
embedding and cues.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import numpy as np

from langchain_energyrouter.cost import LengthDistribution
from langchain_energyrouter.errors import ProfileError
from langchain_energyrouter.prompt.cues import CUE_NAMES, cue_vector

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from langchain_energyrouter.prompt.predictor_file import LengthCalibration, LengthFeatureSpec, ModelLength

__all__ = ["LENGTH_CAP_FACTOR", "LengthFeatures", "LengthModel", "prompt_size"]

LENGTH_CAP_FACTOR = 4.0
"""Predicted median lengths stay below this many times the longest answer seen in training."""


def prompt_size(prompt: str) -> int:
    """The prompt's size in approximate tokens (characters / 4), the same whichever model reads it.

    A model's own input-token count includes its chat template (tens of tokens that differ between models), so a
    feature fitted on one model's counts and fed another's would shift every prediction.
    """
    return max(len(prompt) // 4, 1)


class LengthFeatures:
    """Turns ``(embedding, prompt, input_tokens)`` into the length model's vector: the scaled embedding, the
    standardised cues, the standardised log length of the prompt, and 1."""

    def __init__(self, spec: LengthFeatureSpec, embedding_dim: int) -> None:
        if tuple(spec.cue_names) != CUE_NAMES:
            raise ProfileError(
                f"Predictor's length model reads cues {spec.cue_names}, this version computes {list(CUE_NAMES)}; "
                "retrain it with `energyrouter train`."
            )
        self.spec = spec
        self.embedding_dim = embedding_dim
        self.dim = embedding_dim + len(CUE_NAMES) + 2
        self._center = np.array(spec.cue_center, dtype=np.float64)
        self._scale = np.array(spec.cue_scale, dtype=np.float64) / spec.cue_weight

    def vector(self, embedding: NDArray[Any], prompt: str, input_tokens: int | None) -> NDArray[np.float64]:
        """The vector of one prompt (``input_tokens`` None: counted as characters / 4)."""
        spec = self.spec
        out = np.empty(self.dim, dtype=np.float64)
        d = self.embedding_dim
        out[:d] = embedding
        out[:d] *= spec.embedding_weight
        out[d : d + len(CUE_NAMES)] = (np.array(cue_vector(prompt)) - self._center) / self._scale
        del input_tokens  # each model's tokenizer and chat template count differently: the text's size is shared
        out[-2] = (math.log1p(prompt_size(prompt)) - spec.tokens_center) / spec.tokens_scale * spec.tokens_weight
        out[-1] = 1.0
        return out


class LengthModel:
    """Every model's answer-length distribution for a prompt's :class:`LengthFeatures` vector."""

    def __init__(
        self,
        models: dict[str, ModelLength],
        task_types: Sequence[str],
        dim: int,
        calibration: LengthCalibration,
        task_classifier: Sequence[Sequence[float]] = (),
    ) -> None:
        self.models = tuple(models)
        self.task_types = tuple(task_types)
        self._task_index = {t: i + 1 for i, t in enumerate(self.task_types)}  # block 0: no (known) task
        blocks = 1 + len(self.task_types)
        self._weights = np.zeros((len(self.models), blocks, dim))
        self._offsets = np.zeros((len(self.models), blocks))
        self._corrections = np.zeros((len(self.models), blocks, 3))
        for i, (name, entry) in enumerate(models.items()):
            if len(entry.offsets) != blocks or np.shape(entry.corrections) != (blocks, 3):
                raise ProfileError(
                    f"Length model of {name!r} has {len(entry.offsets)} offsets and corrections of shape "
                    f"{np.shape(entry.corrections)}, not {blocks} and {(blocks, 3)}; "
                    "retrain it with `energyrouter train`."
                )
            self._offsets[i] = entry.offsets
            self._corrections[i] = entry.corrections
            if entry.form == "prompt":
                weights = np.array(entry.weights, dtype=np.float64)
                if weights.shape != (blocks, dim):
                    raise ProfileError(
                        f"Length model of {name!r} has weights of shape {weights.shape}, not {(blocks, dim)}; "
                        "retrain it with `energyrouter train`."
                    )
                self._weights[i] = weights
        if len(calibration.edges) != blocks or len(calibration.by_bin) != blocks:
            raise ProfileError(f"Length calibration has {len(calibration.edges)} blocks, not {blocks}; retrain it.")
        self._edges = [np.array(e, dtype=np.float64) for e in calibration.edges]
        self._by_bin = [np.array(b, dtype=np.float64).reshape(-1, 3) for b in calibration.by_bin]
        self._z = NormalDist().inv_cdf(calibration.quantile)
        self._classifier = np.array(task_classifier, dtype=np.float64).reshape(-1, dim) if task_classifier else None
        self._log_cap = np.log1p(
            [LENGTH_CAP_FACTOR * max(entry.max_output_tokens_seen, 1) for entry in models.values()]
        )

    def block(self, x: NDArray[Any], task_type: str | None) -> int:
        """The weights block of a prompt: its task's, the likeliest task's when none (or one the predictor was
        not trained on) is given, else 0."""
        if task_type is not None and task_type in self._task_index:
            return self._task_index[task_type]
        if self._classifier is not None:
            return int(np.argmax(self._classifier @ x)) + 1
        return 0

    def predict(self, x: NDArray[Any], task_type: str | None) -> dict[str, LengthDistribution]:
        """Per model the length distribution of the answer to the prompt with vector ``x``."""
        block = self.block(x, task_type)
        effect = self._weights[:, block, :] @ x
        bins = np.searchsorted(self._edges[block], effect, side="right")
        shift = self._by_bin[block][bins] + self._corrections[:, block, :]  # (models, 3): median, upper, log mean
        mu = self._offsets[:, block] + effect
        median = np.minimum(mu + shift[:, 0], self._log_cap)
        sigma = np.maximum((mu + shift[:, 1] - median) / self._z, 0.05)
        mean_shift = mu + shift[:, 2] - median - 0.5 * sigma * sigma  # exp(median + shift + s^2/2) = E[tokens + 1]
        return {
            name: LengthDistribution(m, s, h)
            for name, m, s, h in zip(self.models, median.tolist(), sigma.tolist(), mean_shift.tolist(), strict=True)
        }
