"""Per-prompt predictors: each model's expected score and answer length for *this* prompt.

:class:`PromptPredictor` is trained on an outcome matrix (one row per prompt and model,
:mod:`langchain_energyrouter.calibration.outcomes`) and feeds :meth:`Scheduler.decide
<langchain_energyrouter.decide.scheduler.Scheduler.decide>` through ``prompt_accuracy`` and
``prompt_output_tokens``:

* **Expected score** (models with scored rows): a logistic regression on the prompt's features
  (:class:`~langchain_energyrouter.prompt.features.FeatureSpace`: embedding, token count and digit features,
  task one-hot), or the per-task means where the prompt did not beat them on held-out prompts.
* **Answer length** (every model): a distribution, ``log1p(tokens) ~ Normal(mu, sigma)`` with a calibrated
  mean (:mod:`~langchain_energyrouter.prompt.lengths`): one prompt representation shared by every model
  (embedding, lexical cues, input length, task), each model's verbosity on top.

Models with fewer than ``min_rows`` rows are left out: for them the scheduler keeps the profile's (static or
per-task) figures, which stay the prior and the fallback.

Prediction is two small matrix-vector products after the prompt's embedding and cues (tens of microseconds for
16 models). Training (:mod:`~langchain_energyrouter.prompt.training`) needs numpy and scipy (extra
``calibrate``). Files are versioned JSON (:mod:`~langchain_energyrouter.prompt.predictor_file`), validated with
pydantic; an error names the file and the field.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from langchain_energyrouter.cost import LengthDistribution
from langchain_energyrouter.errors import ProfileError
from langchain_energyrouter.files import write_text_atomically
from langchain_energyrouter.prompt.encoders import DEFAULT_ENCODER, PromptEncoder, load_encoder
from langchain_energyrouter.prompt.features import FeatureSpace
from langchain_energyrouter.prompt.lengths import LengthFeatures, LengthModel
from langchain_energyrouter.prompt.predictor_file import PredictorFile, read_predictor_file

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from langchain_energyrouter.prompt.training import OutcomeLike

__all__ = ["PromptPredictor"]


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
        self._scored = tuple(spec.scores)
        for m, score in spec.scores.items():
            if len(score.weights) != spec.feature_dim:
                raise ProfileError(
                    f"Predictor model {m!r} has score weights of the wrong length (not {spec.feature_dim})."
                )
        self._w_score = np.array([spec.scores[m].weights for m in self._scored], dtype=np.float64).reshape(
            len(self._scored), spec.feature_dim
        )
        self._b_score = np.array([spec.scores[m].intercept for m in self._scored], dtype=np.float64)
        self.length_features = LengthFeatures(spec.length_features, encoder.dim)
        self.lengths = LengthModel(
            spec.lengths, spec.task_types, self.length_features.dim, spec.length_calibration, spec.task_classifier
        )
        self.projection = np.array(spec.projection, dtype=np.float32).reshape(-1, encoder.dim)
        self.fingerprint = hashlib.sha256(spec.model_dump_json().encode("utf-8")).hexdigest()[:16]
        """Identifies this predictor; state learned on top of it belongs to it."""

    @property
    def models(self) -> tuple[str, ...]:
        """Models with a length model (every model trained on); :attr:`scored_models` have a score model too."""
        return self.lengths.models

    @property
    def scored_models(self) -> tuple[str, ...]:
        return self._scored

    @property
    def encoder(self) -> PromptEncoder:
        return self.space.encoder

    # -- prediction ------------------------------------------------------------
    def features(self, prompt: str, input_tokens: int | None, task_type: str | None) -> NDArray[np.float32]:
        """The score models' feature vector of one prompt (:class:`FeatureSpace`)."""
        return self.space.vector(prompt, input_tokens, task_type)

    def estimate(
        self, prompt: str, input_tokens: int | None, task_type: str | None
    ) -> tuple[NDArray[np.float32], dict[str, float], dict[str, LengthDistribution]]:
        """The feature vector, per model the expected score in [0, 1], and per model the answer length."""
        x = self.features(prompt, input_tokens, task_type)
        z = self._w_score @ x + self._b_score
        accuracy = dict(zip(self._scored, (1.0 / (1.0 + np.exp(-z))).tolist(), strict=True))
        x_length = self.length_features.vector(x[: self.space.encoder.dim], prompt, input_tokens)
        return x, accuracy, self.lengths.predict(x_length, task_type)

    def predict(
        self, prompt: str, input_tokens: int | None, task_type: str | None
    ) -> tuple[dict[str, float], dict[str, LengthDistribution]]:
        """Per model: expected score in [0, 1] and the answer length's distribution, for this prompt.

        Models absent from the result (too few training rows, or no scored rows for the score) keep the
        profile's figures.
        """
        _, accuracy, lengths = self.estimate(prompt, input_tokens, task_type)
        return accuracy, lengths

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
