"""Training per-prompt predictors on an outcome matrix: a logistic regression of the score and a censored
(Tobit) regression of the answer length per model, with the penalty chosen by cross-validation over prompts
(scipy; extra ``calibrate``). See :mod:`~langchain_energyrouter.prompt.predictor` for the model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from langchain_energyrouter.errors import ProfileError, missing_extra
from langchain_energyrouter.prompt.encoders import PromptEncoder
from langchain_energyrouter.prompt.features import SCALAR_FEATURES, FeatureSpace
from langchain_energyrouter.prompt.predictor_file import ModelQuality, PredictorFile

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["OutcomeLike", "fit_predictor_file"]

_L2_GRID = (0.3, 1.0, 3.0)
_MIN_UNCENSORED = 5
_PROB_EPS = 1e-6


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
    def score(self) -> float: ...
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
    """Every model's score and length predictors fitted on outcome rows (see
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
        if not 0.0 <= float(r.score) <= 1.0 or not math.isfinite(float(r.score)):
            raise ProfileError(f"Outcome row {r.prompt_id!r}/{r.model!r} has score {r.score!r}; scores lie in [0, 1].")
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
    return spec


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
