"""Training per-prompt predictors on an outcome matrix (numpy, scipy; extra ``calibrate``).

Per model, on the rows of the matrix:

* **Score** (rows with a ``score``): an L2-regularised logistic regression on the prompt's features
  (:class:`~langchain_energyrouter.prompt.features.FeatureSpace`: embedding, scalars, task one-hot). The penalty
  is chosen by 3-fold cross-validation over prompts, and so is the form: where the prompt's features do not beat
  the per-task means on held-out prompts (log-loss), the model keeps the per-task means alone, so a per-prompt
  router never routes worse than a per-task one for want of signal.
* **Length** (every row, with several sampled lengths where given): :mod:`~langchain_energyrouter.prompt.
  length_training`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from langchain_energyrouter.errors import ProfileError, missing_extra
from langchain_energyrouter.prompt.encoders import PromptEncoder
from langchain_energyrouter.prompt.features import SCALAR_FEATURES, FeatureSpace
from langchain_energyrouter.prompt.length_training import LengthRow, fit_lengths
from langchain_energyrouter.prompt.predictor_file import PredictorFile, ScoreModel
from langchain_energyrouter.prompt.selection import clearly_better

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["OutcomeLike", "fit_predictor_file"]

_L2_GRID = (0.3, 1.0, 3.0)
_TASK_ONLY_L2 = 1.0
_PROB_EPS = 1e-6
_MIN_CV_ROWS = 30


class OutcomeLike(Protocol):
    """What training reads of a row of an outcome matrix
    (:class:`~langchain_energyrouter.calibration.outcomes.OutcomeRow`)."""

    @property
    def prompt_id(self) -> str: ...
    @property
    def prompt(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def score(self) -> float | None: ...
    @property
    def input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def task_type(self) -> str | None: ...


def fit_predictor_file(
    rows: Iterable[OutcomeLike],
    enc: PromptEncoder,
    *,
    min_rows: int = 30,
    censored_at: int | Mapping[str, int | None] | Literal["auto"] | None = "auto",
    l2: float | None = None,
    projection_dims: int = 16,
    source: str | None = None,
) -> PredictorFile:
    """Every model's score and length models fitted on outcome rows (see
    :meth:`PromptPredictor.train <langchain_energyrouter.prompt.predictor.PromptPredictor.train>` for the arguments).

    Raises:
        ProfileError: no model has ``min_rows`` rows, or a row is unusable.
    """
    data = list(getattr(rows, "rows", rows))  # an OutcomeMatrix or its rows
    if not data:
        raise ProfileError("No outcome rows to train on; pass an outcome matrix with rows.")
    prompts: dict[str, tuple[str, list[int], str | None]] = {}
    by_model: dict[str, list[OutcomeLike]] = {}
    for r in data:
        score = r.score
        if score is not None and not (math.isfinite(float(score)) and 0.0 <= float(score) <= 1.0):
            raise ProfileError(f"Outcome row {r.prompt_id!r}/{r.model!r} has score {score!r}; scores lie in [0, 1].")
        entry = prompts.setdefault(r.prompt_id, (r.prompt, [], r.task_type))
        entry[1].append(int(r.input_tokens))
        by_model.setdefault(r.model, []).append(r)
    counts = {m: len(v) for m, v in sorted(by_model.items())}
    by_model = {m: v for m, v in by_model.items() if len(v) >= min_rows}
    if not by_model:
        raise ProfileError(
            f"No model has the {min_rows} outcome rows needed to train a predictor (rows per model: {counts}). "
            "Record more prompts with `energyrouter accuracy`, or lower min_rows."
        )
    tasks = sorted({t for _, _, t in prompts.values() if t is not None})
    space = FeatureSpace(enc, tasks)
    ids = list(prompts)
    index = {pid: i for i, pid in enumerate(ids)}
    prompt_rows = [(text, int(np.median(tokens)), task) for text, tokens, task in prompts.values()]
    x_all = space.matrix(prompt_rows).astype(np.float64)
    task_columns = slice(enc.dim + len(SCALAR_FEATURES), space.dim)
    scores: dict[str, ScoreModel] = {}
    length_rows: list[LengthRow] = []
    for model, mrows in sorted(by_model.items()):
        scored = [r for r in mrows if r.score is not None]
        if scored:
            x = x_all[[index[r.prompt_id] for r in scored]]
            y = np.array([float(r.score) for r in scored])  # type: ignore[arg-type]
            groups = np.array([index[r.prompt_id] for r in scored])
            scores[model] = _fit_score(x, y, groups, l2, task_columns)
        tokens = np.array([float(r.output_tokens) for r in mrows])
        budget = _budget(censored_at, model, tokens)
        for r in mrows:
            samples = tuple(float(v) for v in (getattr(r, "output_tokens_samples", None) or (r.output_tokens,)))
            # At the budget an answer's length is a lower bound; a row is censored when all its samples are
            # (a single sample, or every one of several), else its mean log length stands as measured.
            cut = budget if budget is not None and min(samples) >= budget else None
            length_rows.append(LengthRow(index[r.prompt_id], model, samples, cut))
    emb = x_all[:, : enc.dim]
    length_features, lengths, calibration, classifier = fit_lengths(prompt_rows, emb, length_rows, tasks)
    k = max(0, min(projection_dims, emb.shape[0] - 1, enc.dim))
    if k > 0:
        _, _, vt = np.linalg.svd(emb - emb.mean(axis=0), full_matrices=False)
        projection = vt[:k].astype(np.float32).tolist()
    else:
        projection = []
    return PredictorFile(
        encoder=enc.name,
        feature_dim=space.dim,
        scalar_features=list(SCALAR_FEATURES),
        task_types=tasks,
        projection=projection,
        scores=scores,
        length_features=length_features,
        lengths=lengths,
        length_calibration=calibration,
        task_classifier=classifier,
        trained_on={"rows": len(data), "prompts": len(ids), "source": source, "min_rows": min_rows},
    )


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
    except ImportError as err:
        raise missing_extra("scipy", "calibrate", "Training prompt predictors") from err
    return minimize


def _fit_logistic(x: NDArray[Any], y: NDArray[Any], l2: float, start: NDArray[Any] | None = None) -> NDArray[Any]:
    """Weights then intercept (last) of the L2-penalised cross-entropy fit; intercept unpenalised."""
    minimize = _optimize()
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


def _row_log_loss(y: NDArray[Any], p: NDArray[Any]) -> NDArray[Any]:
    q = np.clip(p, _PROB_EPS, 1 - _PROB_EPS)
    return np.asarray(-(y * np.log(q) + (1 - y) * np.log(1 - q)))


def _log_loss(y: NDArray[Any], p: NDArray[Any]) -> float:
    return float(np.mean(_row_log_loss(y, p)))


def _predict_logistic(x: NDArray[Any], theta: NDArray[Any]) -> NDArray[Any]:
    d = x.shape[1]
    return 1.0 / (1.0 + np.exp(-(x @ theta[:d] + theta[d])))


def _fit_score(
    x: NDArray[Any], y: NDArray[Any], groups: NDArray[Any], l2: float | None, task_columns: slice
) -> ScoreModel:
    """One model's score model: the prompt form or per-task means, and the penalty, by held-out log-loss."""
    d = x.shape[1]
    tasks_only = np.zeros_like(x)
    tasks_only[:, task_columns] = x[:, task_columns]
    cv: dict[str, float] = {}
    form: Literal["prompt", "task"] = "prompt"
    folds = groups % 3
    if l2 is None:
        l2 = _L2_GRID[1]
        if len(y) >= _MIN_CV_ROWS and len(set(folds.tolist())) == 3:
            held: dict[float, NDArray[Any]] = {lam: np.zeros(len(y)) for lam in _L2_GRID}
            task_p = np.zeros(len(y))
            mean_loss = 0.0
            for f in range(3):
                train, test = folds != f, folds == f
                mean_loss += _log_loss(y[test], np.full(test.sum(), y[train].mean())) * float(test.sum())
                theta = _fit_logistic(tasks_only[train], y[train], _TASK_ONLY_L2)
                task_p[test] = _predict_logistic(tasks_only[test], theta)
                start: NDArray[Any] | None = None
                for lam in _L2_GRID:  # warm start along the path: each fit starts from the previous one
                    start = _fit_logistic(x[train], y[train], lam, start)
                    held[lam][test] = _predict_logistic(x[test], start)
            loss, l2 = min((_log_loss(y, p), lam) for lam, p in held.items())
            cv = {"prompt": loss, "task": _log_loss(y, task_p), "mean": mean_loss / len(y)}
            if not clearly_better(_row_log_loss(y, held[l2]) - _row_log_loss(y, task_p)):
                form = "task"
    if form == "task":
        theta = _fit_logistic(tasks_only, y, _TASK_ONLY_L2)  # weights off the task columns stay 0: no signal
        l2 = _TASK_ONLY_L2
    else:
        theta = _fit_logistic(x, y, l2)
    return ScoreModel(
        n_rows=len(y),
        mean_score=float(y.mean()),
        form=form,
        l2=l2,
        intercept=float(theta[d]),
        weights=[float(v) for v in theta[:d]],
        cv_log_loss=cv.get("prompt"),
        cv_log_loss_task_only=cv.get("task"),
        cv_log_loss_mean_only=cv.get("mean"),
    )
