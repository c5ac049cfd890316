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

__all__ = ["PREDICTOR_SCHEMA_VERSION", "ModelQuality", "PredictorFile", "read_predictor_file"]

PREDICTOR_SCHEMA_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModelQuality(_Strict):
    """One model's fitted predictors."""

    n_rows: int = Field(ge=1)
    """Training rows (prompts) of this model."""
    mean_score: float = Field(ge=0, le=1)
    """Mean score over those rows (the prediction with no prompt signal)."""
    l2: float = Field(gt=0)
    """Penalty chosen by cross-validation."""
    score_intercept: float
    score_weights: list[float]
    """One weight per feature (the file's ``feature_dim``)."""
    cv_log_loss: float | None = None
    """Held-out log-loss of the chosen fit (3 folds over prompts)."""
    cv_log_loss_mean_only: float | None = None
    """Held-out log-loss of predicting the training mean: the baseline the prompt must beat."""
    length_intercept: float
    """Tobit regression of ``log1p(generated tokens)``."""
    length_weights: list[float]
    length_sigma: float = Field(gt=0)
    """Residual scale of ``log1p(tokens)``."""
    censored_at: int | None = Field(default=None, ge=1)
    """Generation budget during the outcome run; lengths there are censored."""
    n_censored: int = Field(default=0, ge=0)
    max_output_tokens_seen: int = Field(ge=0)
    """Longest answer in training; predictions are capped at 4 times it."""


class PredictorFile(_Strict):
    """The on-disk format of a :class:`PromptPredictor` (``energyrouter train`` writes it)."""

    schema_version: Literal[1] = 1
    encoder: str
    """Full encoder name, e.g. ``minilm-static-256`` or ``hashing-1024``."""
    feature_dim: int = Field(ge=1)
    scalar_features: list[str]
    task_types: list[str]
    projection: list[list[float]]
    """Principal directions of the training embeddings (rows): the bandit's compact context."""
    models: dict[str, ModelQuality]
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
    if isinstance(data, dict) and isinstance(data.get("schema_version"), int) and data["schema_version"] > 1:
        raise ProfileError(
            f"Predictor file {file} has schema_version {data['schema_version']}; this version reads 1. "
            "Upgrade langchain-energyrouter or retrain."
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
