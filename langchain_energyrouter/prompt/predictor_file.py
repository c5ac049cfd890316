"""The predictor file: what ``energyrouter train`` writes and a router loads (versioned JSON, pydantic).

An error names the file and the field, and says to retrain.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from langchain_energyrouter.errors import ProfileError

__all__ = [
    "PREDICTOR_SCHEMA_VERSION",
    "LengthCalibration",
    "LengthFeatureSpec",
    "ModelLength",
    "PredictorFile",
    "ScoreModel",
    "read_predictor_file",
]

PREDICTOR_SCHEMA_VERSION = 2


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ScoreModel(_Strict):
    """One model's expected score for a prompt: a logistic regression on the prompt's features."""

    n_rows: int = Field(ge=1)
    """Scored training rows (prompts) of this model."""
    mean_score: float = Field(ge=0, le=1)
    """Mean score over those rows (the prediction with no prompt signal)."""
    form: Literal["prompt", "task"]
    """``prompt``: the prompt's embedding and features; ``task``: per-task means alone (the prompt did not
    beat them on held-out prompts)."""
    l2: float = Field(gt=0)
    """Penalty chosen by cross-validation."""
    intercept: float
    weights: list[float]
    """One weight per feature (the file's ``feature_dim``); zero but the task's where ``form == "task"``."""
    cv_log_loss: float | None = None
    """Held-out log-loss of the prompt form (3 folds over prompts)."""
    cv_log_loss_task_only: float | None = None
    """Held-out log-loss of per-task means: the baseline the prompt must beat."""
    cv_log_loss_mean_only: float | None = None
    """Held-out log-loss of predicting the model's mean score."""


class LengthFeatureSpec(_Strict):
    """How the length model builds a prompt's vector
    (:class:`~langchain_energyrouter.prompt.lengths.LengthFeatures`)."""

    cue_names: list[str]
    cue_center: list[float]
    cue_scale: list[float]
    """Standardisation of the cues (0 and 1 for the binary ones)."""
    tokens_center: float
    tokens_scale: float = Field(gt=0)
    """Standardisation of ``log1p(input tokens)``."""
    embedding_weight: float = Field(gt=0)
    cue_weight: float = Field(gt=0)
    tokens_weight: float = Field(gt=0)
    task_interaction: float = Field(ge=0)
    """How much a task's own prompt weights count against the shared ones (the kernel's task factor)."""
    ridge: float = Field(gt=0)
    """Penalty of the shared weights, chosen by cross-validation."""
    model_ridge: float = Field(gt=0)
    """Penalty of each model's own deviations."""


class LengthCalibration(_Strict):
    """Pooled corrections of the length model (:mod:`~langchain_energyrouter.prompt.length_calibration`)."""

    quantile: float = Field(gt=0, lt=1)
    """The upper quantile calibrated."""
    edges: list[list[float]]
    """Per block, the edges of the bins of the prompt's own effect."""
    by_bin: list[list[list[float]]]
    """Per block and bin, ``[median, upper quantile, log mean]`` log-scale corrections."""


class ModelLength(_Strict):
    """One model's answer length: ``log1p(tokens) ~ Normal(offset[t] + x . weights[t], sigma)``."""

    n_rows: int = Field(ge=1)
    form: Literal["prompt", "task"]
    """``prompt``: the prompt's vector moves the length; ``task``: per-task means alone (the prompt did not beat
    them on held-out prompts for this model)."""
    offsets: list[float]
    """Per block: no (known) task, then each of the length part's ``task_types``."""
    weights: list[list[float]] = Field(default_factory=list)
    """Per block, one weight per length feature; empty where ``form == "task"``."""
    corrections: list[list[float]]
    """Per block, this model's own ``[median, upper quantile, log mean]`` corrections on the log scale, on top of
    the pooled ones (:class:`LengthCalibration`), calibrated on held-out prompts."""
    cv_median_ape: float | None = None
    """Held-out median absolute percentage error of the prompt form's median."""
    cv_median_ape_task_only: float | None = None
    """The same for per-task means: the baseline the prompt must beat."""
    censored_at: int | None = Field(default=None, ge=1)
    """Generation budget of the training answers; lengths there were censored (at least this)."""
    n_censored: int = Field(default=0, ge=0)
    max_output_tokens_seen: int = Field(ge=0)
    """Longest answer in training; predicted medians stay below 4 times it."""


class PredictorFile(_Strict):
    """The on-disk format of a :class:`~langchain_energyrouter.prompt.predictor.PromptPredictor`
    (``energyrouter train`` writes it)."""

    schema_version: Literal[2] = 2
    encoder: str
    """Full encoder name, e.g. ``minilm-static-256`` or ``hashing-1024``."""
    feature_dim: int = Field(ge=1)
    """Length of the score models' feature vector (embedding, scalar features, task one-hot)."""
    scalar_features: list[str]
    task_types: list[str]
    projection: list[list[float]]
    """Principal directions of the training embeddings (rows): the bandit's compact context."""
    scores: dict[str, ScoreModel] = Field(default_factory=dict)
    """Models with scored training rows."""
    length_features: LengthFeatureSpec
    lengths: dict[str, ModelLength]
    length_calibration: LengthCalibration
    task_classifier: list[list[float]] = Field(default_factory=list)
    """Per task type, weights on the length features: a request without a task type is given the task whose
    score is highest (empty: fewer than two task types were trained on)."""
    trained_on: dict[str, Any] = Field(default_factory=dict)
    """Rows, prompts and where they came from."""


def read_predictor_file(path: str | os.PathLike[str]) -> PredictorFile:
    """Validate a predictor file without building its encoder."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise ProfileError(
            f"Predictor file {file} does not exist; write one with `energyrouter train --matrix M.jsonl --out {file}`."
        ) from err
    except (OSError, UnicodeDecodeError) as err:
        raise ProfileError(f"Predictor file {file} cannot be read: {err}") from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ProfileError(
            f"Predictor file {file} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); "
            "retrain it with `energyrouter train`."
        ) from err
    version = data.get("schema_version") if isinstance(data, dict) else None
    if isinstance(version, int) and version != PREDICTOR_SCHEMA_VERSION:
        newer = version > PREDICTOR_SCHEMA_VERSION
        raise ProfileError(
            f"Predictor file {file} has schema_version {version}; this version reads {PREDICTOR_SCHEMA_VERSION}. "
            + (
                "Upgrade langchain-energyrouter or retrain it."
                if newer
                else "Version 1 predicted one length per model; retrain it with `energyrouter train` (same matrix) "
                "for length distributions."
            )
        )
    try:
        return PredictorFile.model_validate(data)
    except ValidationError as err:
        problems = []
        for item in err.errors()[:5]:
            where = ".".join(str(p) for p in item["loc"]) or "<root>"
            value = item.get("input")
            shown = "" if isinstance(value, (dict, list)) else f" (got {value!r:.60})"
            problems.append(f"{where}: {item['msg']}{shown}")
        raise ProfileError(
            f"Predictor file {file} is invalid: " + "; ".join(problems) + ". Retrain it with `energyrouter train`."
        ) from err
