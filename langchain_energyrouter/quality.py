"""Per-prompt predictors: each model's expected score and answer length for *this* prompt.

:class:`PromptPredictor` is trained on an outcome matrix (one row per prompt and model,
:mod:`langchain_energyrouter.outcomes`) and feeds :meth:`Scheduler.decide
<langchain_energyrouter.scheduler.Scheduler.decide>` through ``prompt_accuracy`` and
``prompt_output_tokens``. Per model, over the features of :class:`~langchain_energyrouter.features.FeatureSpace`
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
Training needs numpy and scipy (extra ``calibrate``). Files are versioned JSON, validated
with pydantic; an error names the file and the field.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from langchain_energyrouter.errors import ProfileError, missing_extra
from langchain_energyrouter.features import (
    DEFAULT_ENCODER,
    SCALAR_FEATURES,
    FeatureSpace,
    PromptEncoder,
    load_encoder,
)
from langchain_energyrouter.files import write_text_atomically

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = [
    "PREDICTOR_SCHEMA_VERSION",
    "ModelQuality",
    "OutcomeLike",
    "PredictorFile",
    "PromptPredictor",
]

PREDICTOR_SCHEMA_VERSION = 1
_L2_GRID = (0.3, 1.0, 3.0)
_MIN_UNCENSORED = 5
_LENGTH_CAP_FACTOR = 4.0
_PROB_EPS = 1e-6


class OutcomeLike(Protocol):
    """What training reads of a row of an outcome matrix (:class:`~langchain_energyrouter.outcomes.OutcomeRow`)."""

    @property
    def prompt_id(self) -> str: ...
    @property
    def prompt(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def score(self) -> float: ...
    @property
    def input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def task_type(self) -> str | None: ...


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
        half_var = np.array([spec.models[m].length_sigma ** 2 / 2 for m in names], dtype=np.float64)
        self._len_offset = self._b_len + half_var
        self._len_cap = np.array(
            [max(1.0, _LENGTH_CAP_FACTOR * spec.models[m].max_output_tokens_seen) for m in names], dtype=np.float64
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

    def predict_vector(self, x: NDArray[Any]) -> tuple[dict[str, float], dict[str, float]]:
        """:meth:`predict` from a feature vector already computed."""
        z = self._w_score @ x + self._b_score
        acc = 1.0 / (1.0 + np.exp(-z))
        mu = self._w_len @ x + self._len_offset
        tout = np.minimum(np.expm1(np.minimum(mu, 30.0)), self._len_cap)
        names = self._names
        return dict(zip(names, acc.tolist(), strict=True)), dict(
            zip(names, np.maximum(tout, 0.0).tolist(), strict=True)
        )

    def predict(
        self, prompt: str, input_tokens: int | None, task_type: str | None
    ) -> tuple[dict[str, float], dict[str, float]]:
        """Per model: expected score in [0, 1] and expected generated tokens, for this prompt.

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
            encoder: an encoder, an encoder name, or None for :data:`~langchain_energyrouter.features.DEFAULT_ENCODER`.
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
        data = list(getattr(rows, "rows", rows))  # an OutcomeMatrix or its rows
        if not data:
            raise ProfileError("No outcome rows to train on; pass an outcome matrix with rows.")
        prompts: dict[str, tuple[str, list[int], str | None]] = {}
        by_model: dict[str, list[OutcomeLike]] = {}
        for r in data:
            if not 0.0 <= float(r.score) <= 1.0 or not math.isfinite(float(r.score)):
                raise ProfileError(
                    f"Outcome row {r.prompt_id!r}/{r.model!r} has score {r.score!r}; scores lie in [0, 1]."
                )
            entry = prompts.setdefault(r.prompt_id, (r.prompt, [], r.task_type))
            entry[1].append(int(r.input_tokens))
            by_model.setdefault(r.model, []).append(r)
        tasks = sorted({t for _, _, t in prompts.values() if t is not None})
        space = FeatureSpace(enc, tasks)
        ids = list(prompts)
        index = {pid: i for i, pid in enumerate(ids)}
        x_all = space.matrix([(p, int(np.median(tok)), t) for p, tok, t in prompts.values()]).astype(np.float64)
        fitted: dict[str, ModelQuality] = {}
        for model, mrows in sorted(by_model.items()):
            if len(mrows) < min_rows:
                continue
            x = x_all[[index[r.prompt_id] for r in mrows]]
            y = np.array([float(r.score) for r in mrows])
            tokens = np.array([float(r.output_tokens) for r in mrows])
            groups = np.array([index[r.prompt_id] for r in mrows])
            budget = _budget(censored_at, model, tokens)
            fitted[model] = _fit_model(x, y, tokens, budget, groups, l2)
        if not fitted:
            counts = {m: len(v) for m, v in sorted(by_model.items())}
            raise ProfileError(
                f"No model has the {min_rows} outcome rows needed to train a predictor (rows per model: {counts}). "
                "Record more prompts with `energyrouter accuracy`, or lower min_rows."
            )
        emb = x_all[:, : enc.dim]
        k = max(0, min(projection_dims, emb.shape[0] - 1, enc.dim))
        if k > 0:
            _, _, vt = np.linalg.svd(emb - emb.mean(axis=0), full_matrices=False)
            projection = vt[:k].astype(np.float32).tolist()
        else:
            projection = []
        spec = PredictorFile(
            encoder=enc.name,
            feature_dim=space.dim,
            scalar_features=list(SCALAR_FEATURES),
            task_types=tasks,
            projection=projection,
            models=fitted,
            trained_on={"rows": len(data), "prompts": len(ids), "source": source, "min_rows": min_rows},
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


# -- fitting --------------------------------------------------------------------
def _budget(
    censored_at: int | Mapping[str, int | None] | Literal["auto"] | None, model: str, tokens: NDArray[Any]
) -> int | None:
    if censored_at is None:
        return None
    if isinstance(censored_at, Mapping):
        return censored_at.get(model)
    if censored_at != "auto":
        return int(censored_at)
    top = float(tokens.max()) if tokens.size else 0.0
    at_top = int(np.sum(tokens >= top))
    return int(top) if top >= 1 and at_top >= max(3, 0.05 * tokens.size) else None


def _optimize() -> Any:
    try:
        from scipy.optimize import minimize
        from scipy.special import log_ndtr
    except ImportError as err:
        raise missing_extra("scipy", "calibrate", "Training prompt predictors") from err
    return minimize, log_ndtr


def _fit_logistic(x: NDArray[Any], y: NDArray[Any], l2: float, start: NDArray[Any] | None = None) -> NDArray[Any]:
    """Weights then intercept (last) of the L2-penalised cross-entropy fit; intercept unpenalised."""
    minimize, _ = _optimize()
    d = x.shape[1]

    def loss(theta: NDArray[Any]) -> tuple[float, NDArray[Any]]:
        z = x @ theta[:d] + theta[d]
        p = 1.0 / (1.0 + np.exp(-z))
        # cross-entropy with log-sum-exp: log(1 + e^z) - y z
        value = float(np.sum(np.logaddexp(0.0, z) - y * z)) + 0.5 * l2 * float(theta[:d] @ theta[:d])
        r = p - y
        grad = np.empty(d + 1)
        grad[:d] = x.T @ r + l2 * theta[:d]
        grad[d] = r.sum()
        return value, grad

    mean = float(np.clip(y.mean(), _PROB_EPS, 1 - _PROB_EPS))
    theta0 = start if start is not None else np.concatenate([np.zeros(d), [math.log(mean / (1 - mean))]])
    res = minimize(loss, theta0, jac=True, method="L-BFGS-B", options={"maxiter": 500})
    return np.asarray(res.x)


def _log_loss(y: NDArray[Any], p: NDArray[Any]) -> float:
    p = np.clip(p, _PROB_EPS, 1 - _PROB_EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _fit_tobit(x: NDArray[Any], t: NDArray[Any], budget: int | None, l2: float) -> tuple[NDArray[Any], float]:
    """Weights then intercept of ``log1p(tokens)`` with rows at ``budget`` censored; and sigma."""
    minimize, log_ndtr = _optimize()
    n, d = x.shape
    y = np.log1p(t)
    cens = t >= budget if budget is not None else np.zeros(n, dtype=bool)
    unc = ~cens
    if unc.sum() < _MIN_UNCENSORED:
        # Nearly every answer hit the budget: the length beyond it is not identified.
        level = math.log1p(float(budget)) if budget is not None else float(y.mean()) if n else 0.0
        return np.concatenate([np.zeros(d), [level]]), 0.05
    c = math.log1p(float(budget)) if budget is not None else 0.0

    def loss(theta: NDArray[Any]) -> tuple[float, NDArray[Any]]:
        w, b, log_s = theta[:d], theta[d], theta[d + 1]
        s = math.exp(log_s)
        mu = x @ w + b
        grad_mu = np.zeros(n)
        zu = (y[unc] - mu[unc]) / s
        value = float(0.5 * zu @ zu) + unc.sum() * log_s
        grad_mu[unc] = -zu / s
        g_logs = float(unc.sum() - zu @ zu)
        if cens.any():
            u = (mu[cens] - c) / s
            lcdf = log_ndtr(u)
            value -= float(lcdf.sum())
            h = np.exp(-0.5 * u * u - 0.5 * math.log(2 * math.pi) - lcdf)  # pdf / cdf
            grad_mu[cens] = -h / s
            g_logs += float((h * u).sum())
        value += 0.5 * l2 * float(w @ w)
        grad = np.empty(d + 2)
        grad[:d] = x.T @ grad_mu + l2 * w
        grad[d] = grad_mu.sum()
        grad[d + 1] = g_logs
        return value, grad

    sd = float(np.std(y[unc])) or 0.5
    theta0 = np.concatenate([np.zeros(d), [float(y[unc].mean()), math.log(max(sd, 0.05))]])
    # sigma is kept in [0.01, 5] (log scale) while fitting too: identical lengths would drive it to 0 and overflow.
    bounds = [(None, None)] * (d + 1) + [(math.log(0.01), math.log(5.0))]
    theta0[d + 1] = min(max(theta0[d + 1], math.log(0.01)), math.log(5.0))
    res = minimize(loss, theta0, jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": 500})
    theta = np.asarray(res.x)
    return theta[: d + 1], float(min(max(math.exp(theta[d + 1]), 0.01), 5.0))


def _fit_model(
    x: NDArray[Any], y: NDArray[Any], tokens: NDArray[Any], budget: int | None, groups: NDArray[Any], l2: float | None
) -> ModelQuality:
    d = x.shape[1]
    cv_loss: float | None = None
    cv_base: float | None = None
    if l2 is None:
        folds = groups % 3
        best = (math.inf, _L2_GRID[1])
        if len(y) >= 30 and len(set(folds.tolist())) == 3:
            base = []
            losses: dict[float, list[float]] = {lam: [] for lam in _L2_GRID}
            for f in range(3):
                train, test = folds != f, folds == f
                base.append(_log_loss(y[test], np.full(test.sum(), y[train].mean())) * test.sum())
                theta = None
                for lam in _L2_GRID:  # warm start along the path: each fit starts from the previous one
                    theta = _fit_logistic(x[train], y[train], lam, theta)
                    p = 1.0 / (1.0 + np.exp(-(x[test] @ theta[:d] + theta[d])))
                    losses[lam].append(_log_loss(y[test], p) * test.sum())
            best = min((sum(v) / len(y), lam) for lam, v in losses.items())
            cv_loss, cv_base = best[0], sum(base) / len(y)
        l2 = best[1]
    theta = _fit_logistic(x, y, l2)
    length, sigma = _fit_tobit(x, tokens, budget, l2)
    return ModelQuality(
        n_rows=len(y),
        mean_score=float(y.mean()),
        l2=l2,
        score_intercept=float(theta[d]),
        score_weights=[float(v) for v in theta[:d]],
        cv_log_loss=cv_loss,
        cv_log_loss_mean_only=cv_base,
        length_intercept=float(length[d]),
        length_weights=[float(v) for v in length[:d]],
        length_sigma=sigma,
        censored_at=budget,
        n_censored=int(np.sum(tokens >= budget)) if budget is not None else 0,
        max_output_tokens_seen=int(tokens.max()) if tokens.size else 0,
    )
