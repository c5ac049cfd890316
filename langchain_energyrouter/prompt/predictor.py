"""Per-prompt predictors: each model's expected score and answer length for *this* prompt.

:class:`PromptPredictor` is trained on an outcome matrix (one row per prompt and model,
:mod:`langchain_energyrouter.calibration.outcomes`) and feeds :meth:`Scheduler.decide
<langchain_energyrouter.decide.scheduler.Scheduler.decide>` through ``prompt_accuracy`` and
``prompt_output_tokens``. Per model, over the features of :class:`~langchain_energyrouter.prompt.features.FeatureSpace`
(embedding, token count and digit features, task one-hot):

* **Expected score**: L2-regularised logistic regression on the score (0 to 1; fractional
  scores are fine, the loss is the cross-entropy). The intercept is not penalised, so with
  few rows (or features that carry no signal) the prediction shrinks to the model's mean
  score, and per-task one-hots shrink to it too unless a task has the rows to move them.
  The penalty is chosen per model by 3-fold cross-validation over prompts; the held-out
  log-loss and the mean-only baseline's are recorded, so a reader sees what the prompt adds.
* **Answer length** (generated tokens): a censored (Tobit) regression of ``log1p(tokens)``.
  A row at the generation budget says only "at least the budget"; it enters the likelihood
  as ``P(length >= budget)``, never as a length. The budget is given (``censored_at``) or
  detected (the largest length, when several rows share it). The prediction is the
  log-normal mean ``exp(mu + sigma^2 / 2) - 1``, capped at 4 times the longest answer seen.
  With too few uncensored rows the length is not identified: the budget is predicted.

Models with fewer than ``min_rows`` rows are left out: for them the scheduler keeps the
profile's (static or per-task) accuracy, which stays the prior and the fallback.

Prediction is a few small matrix-vector products (about 10 microseconds for 16 models).
Training (:mod:`~langchain_energyrouter.prompt.training`) needs numpy and scipy (extra ``calibrate``). Files are
versioned JSON (:mod:`~langchain_energyrouter.prompt.predictor_file`), validated with pydantic; an error names the
file and the field.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from langchain_energyrouter.cost import LengthDistribution
from langchain_energyrouter.errors import ProfileError
from langchain_energyrouter.files import write_text_atomically
from langchain_energyrouter.prompt.encoders import DEFAULT_ENCODER, PromptEncoder, load_encoder
from langchain_energyrouter.prompt.features import FeatureSpace
from langchain_energyrouter.prompt.predictor_file import PredictorFile, read_predictor_file

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from langchain_energyrouter.prompt.training import OutcomeLike

__all__ = ["PromptPredictor"]

_LENGTH_CAP_FACTOR = 4.0


class PromptPredictor:
    """Per-model expected score and answer length from a prompt's features.

    Build with :meth:`train` or :meth:`load`; then :meth:`predict` per request.
    """

    def __init__(self, spec: PredictorFile, encoder: PromptEncoder) -> None:
        if encoder.name != spec.encoder:
            raise ProfileError(
                f"Predictor was trained with encoder {spec.encoder!r} but {encoder.name!r} was given; "
                "pass the same encoder or let load() build it."
            )
        self.spec = spec
        self.space = FeatureSpace(encoder, spec.task_types)
        if self.space.dim != spec.feature_dim:
            raise ProfileError(
                f"Predictor feature_dim={spec.feature_dim} but encoder {encoder.name!r} with "
                f"{len(spec.task_types)} task types gives {self.space.dim}; retrain with `energyrouter train`."
            )
        names = list(spec.models)
        self._names = tuple(names)
        self._w_score = np.array([spec.models[m].score_weights for m in names], dtype=np.float64).reshape(
            len(names), -1
        )
        self._b_score = np.array([spec.models[m].score_intercept for m in names], dtype=np.float64)
        self._w_len = np.array([spec.models[m].length_weights for m in names], dtype=np.float64).reshape(len(names), -1)
        self._b_len = np.array([spec.models[m].length_intercept for m in names], dtype=np.float64)
        self._sigma = [spec.models[m].length_sigma for m in names]
        self._log_len_cap = np.log1p(
            np.array([max(1.0, _LENGTH_CAP_FACTOR * spec.models[m].max_output_tokens_seen) for m in names])
        )
        for m in names:
            q = spec.models[m]
            if len(q.score_weights) != spec.feature_dim or len(q.length_weights) != spec.feature_dim:
                raise ProfileError(f"Predictor model {m!r} has weights of the wrong length (not {spec.feature_dim}).")
        self.projection = np.array(spec.projection, dtype=np.float32).reshape(-1, encoder.dim)
        self.fingerprint = hashlib.sha256(spec.model_dump_json().encode("utf-8")).hexdigest()[:16]
        """Identifies this predictor; state learned on top of it belongs to it."""

    @property
    def models(self) -> tuple[str, ...]:
        return self._names

    @property
    def encoder(self) -> PromptEncoder:
        return self.space.encoder

    # -- prediction ------------------------------------------------------------
    def features(self, prompt: str, input_tokens: int | None, task_type: str | None) -> NDArray[np.float32]:
        """The feature vector of one prompt (:class:`FeatureSpace`)."""
        return self.space.vector(prompt, input_tokens, task_type)

    def predict_vector(self, x: NDArray[Any]) -> tuple[dict[str, float], dict[str, LengthDistribution]]:
        """:meth:`predict` from a feature vector already computed."""
        z = self._w_score @ x + self._b_score
        acc = 1.0 / (1.0 + np.exp(-z))
        mu = np.minimum(self._w_len @ x + self._b_len, self._log_len_cap)
        lengths = {m: LengthDistribution(a, s) for m, a, s in zip(self._names, mu.tolist(), self._sigma, strict=True)}
        return dict(zip(self._names, acc.tolist(), strict=True)), lengths

    def predict(
        self, prompt: str, input_tokens: int | None, task_type: str | None
    ) -> tuple[dict[str, float], dict[str, LengthDistribution]]:
        """Per model: expected score in [0, 1] and the answer length's distribution, for this prompt.

        Models absent from the result (too few training rows) keep the profile's figures.
        """
        return self.predict_vector(self.features(prompt, input_tokens, task_type))

    # -- training --------------------------------------------------------------
    @classmethod
    def train(
        cls,
        rows: Iterable[OutcomeLike],
        *,
        encoder: PromptEncoder | str | None = None,
        min_rows: int = 30,
        censored_at: int | Mapping[str, int | None] | Literal["auto"] | None = "auto",
        l2: float | None = None,
        projection_dims: int = 16,
        cache_dir: str | Path | None = None,
        source: str | None = None,
    ) -> PromptPredictor:
        """Fit every model's score and length predictors on outcome rows.

        Args:
            rows: outcome rows (one per prompt and model), or an ``OutcomeMatrix``.
            encoder: an encoder, an encoder name, or None for
                :data:`~langchain_energyrouter.prompt.encoders.DEFAULT_ENCODER`.
            min_rows: models with fewer rows are left out (the profile's accuracy serves them).
            censored_at: generation budget of the outcome run (lengths there are censored), per model
                or for all; ``"auto"`` detects it; None: no censoring.
            l2: fixed penalty instead of cross-validation.
            projection_dims: size of the bandit's compact embedding (principal directions).
            cache_dir: where the encoder's distilled table is cached.
            source: recorded in ``trained_on`` (e.g. the matrix's path).

        Raises:
            ProfileError: no model has ``min_rows`` rows, or a row is unusable.
        """
        enc = (
            encoder
            if encoder is not None and not isinstance(encoder, str)
            else load_encoder(encoder or DEFAULT_ENCODER, cache_dir=cache_dir)
        )
        from langchain_energyrouter.prompt.training import fit_predictor_file  # numpy-only inference needs no scipy

        spec = fit_predictor_file(
            rows, enc, min_rows=min_rows, censored_at=censored_at, l2=l2, projection_dims=projection_dims, source=source
        )
        return cls(spec, enc)

    # -- files -----------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically (temp file + rename)."""
        return write_text_atomically(path, self.spec.model_dump_json() + "\n")

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        encoder: PromptEncoder | None = None,
        cache_dir: str | Path | None = None,
    ) -> PromptPredictor:
        """Load and validate a predictor file; builds its encoder unless one is given.

        Raises:
            ProfileError: the file is missing, not JSON, or invalid (the message names the file and field).
        """
        spec = read_predictor_file(path)
        enc = encoder if encoder is not None else load_encoder(spec.encoder, cache_dir=cache_dir)
        return cls(spec, enc)
