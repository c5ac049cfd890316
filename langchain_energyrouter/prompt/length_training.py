"""Training the per-prompt answer-length model (:mod:`~langchain_energyrouter.prompt.lengths`; numpy, scipy).

The fit, per training matrix:

1. **Offsets.** Per model and task, the mean ``log1p(tokens)`` (of every sampled answer when a row has
   several), shrunk toward the model's mean plus the task's effect (``OFFSET_PRIOR`` pseudo-rows).
2. **Shared prompt weights.** The residuals, averaged per prompt over the models that answered it, are fitted
   by kernel ridge regression over prompts; the kernel is the features' dot product, multiplied by
   ``1 + TASK_INTERACTION**2`` between prompts of the same task, so a task can weigh the prompt its own way.
3. **Each model's own weights.** What is left of each model's residuals, by a kernel ridge of its own
   (``MODEL_RIDGE``): a prompt long for one model is long for the others, and each keeps its quirks.
4. **Censoring.** An answer cut at the generation budget says "at least this long": its target is replaced
   by the expected log length beyond the budget under the current fit (until the targets settle), never
   taken as the length.
5. **Held-out choices.** Five folds over prompts give every row a prediction from a fit that never saw its
   prompt. They choose the shared penalty (``RIDGE_GRID``, by pooled median APE), choose per model between
   the prompt form and per-task means alone (the baseline a prompt must beat), and calibrate per model the
   median, the upper quantile (so the 90th percentile covers 90% of answers) and the mean (so summed means
   match summed lengths): :mod:`~langchain_energyrouter.prompt.length_calibration`.
6. **Task classifier.** Requests without a task type get the likeliest task: a ridge classifier, one task
   against the rest, on the same prompt vectors.

The weights are stored in primal form, one vector per model and task block. The hyperparameters' defaults were
chosen by cross-validation over prompts on CASTILLO's training split (13 open chat models, 4,494 prompts) and
confirmed on its validation split; see the README's "Routing by the prompt itself" for the figures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from langchain_energyrouter.cost import DEFAULT_LENGTH_LOG_SIGMA
from langchain_energyrouter.errors import missing_extra
from langchain_energyrouter.prompt.cues import CONTINUOUS_CUES, CUE_NAMES, cue_vector
from langchain_energyrouter.prompt.length_calibration import QUANTILE, calibrate
from langchain_energyrouter.prompt.lengths import LengthFeatures, prompt_size
from langchain_energyrouter.prompt.predictor_file import LengthCalibration, LengthFeatureSpec, ModelLength
from langchain_energyrouter.prompt.selection import clearly_better

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["LengthRow", "fit_lengths"]

EMBEDDING_WEIGHT = 1.6
CUE_WEIGHT = 0.7
TOKENS_WEIGHT = 0.7
TASK_INTERACTION = 3.0
RIDGE_GRID = (200.0, 400.0, 800.0)
MODEL_RIDGE = 100.0
OFFSET_PRIOR = 5.0
FOLDS = 5
MIN_MODEL_ROWS = 10
"""A model needs this many rows for weights of its own (else the shared ones serve it)."""
CENSOR_ITERATIONS = 20
"""At most this many rounds of imputing censored targets and refitting (they stop once the targets settle)."""
CLASSIFIER_RIDGE = 10.0
CENSORED_DRAWS = 10
"""Draws beyond the budget that stand in for a censored answer when the median and quantiles are calibrated."""
_SEED = 123


@dataclass(frozen=True)
class LengthRow:
    """One model's answer(s) to one prompt, as the length fit reads them."""

    prompt: int
    """Index of the prompt (into the prompts given to :func:`fit_lengths`)."""
    model: str
    samples: tuple[float, ...]
    """Generated tokens of each sampled answer (one for most matrices)."""
    censored_at: int | None = None
    """The generation budget when the (single) answer reached it: a lower bound."""


@dataclass
class _Data:
    x: NDArray[np.float64]
    """Prompt vectors (P, D)."""
    task: NDArray[np.int64]
    """Prompt task index, -1 for none."""
    row_prompt: NDArray[np.int64]
    row_model: NDArray[np.int64]
    row_group: NDArray[np.int64]
    """Task index of the row's prompt, T for none."""
    y: NDArray[np.float64]
    """Mean ``log1p(tokens)`` of the row's samples (the fit's target)."""
    censor: NDArray[np.float64]
    """``log1p(budget)`` for censored rows, NaN for the others."""
    n_models: int
    n_groups: int


@dataclass
class _Fit:
    offsets: NDArray[np.float64]
    """(M, T + 1): per model and task group (the last: no task)."""
    model_mean: NDArray[np.float64]
    prompts: NDArray[np.int64]
    """The training prompts (indices into the data)."""
    alpha: NDArray[np.float64]
    betas: dict[int, tuple[NDArray[np.int64], NDArray[np.float64]]]
    """Model -> (positions of its prompts in :attr:`prompts`, their dual coefficients)."""


def fit_lengths(
    prompts: Sequence[tuple[str, int | None, str | None]],
    embeddings: NDArray[Any],
    rows: Sequence[LengthRow],
    task_types: Sequence[str],
) -> tuple[LengthFeatureSpec, dict[str, ModelLength], LengthCalibration, list[list[float]]]:
    """Fit every model's length model (see the module doc): the feature spec, the models, their pooled
    calibration and the task classifier.

    Args:
        prompts: ``(text, input tokens, task type)`` per prompt.
        embeddings: the encoder's vector of each prompt, ``(len(prompts), dim)``.
        rows: the answers, each naming its prompt by index.
        task_types: the task types known to the predictor (others count as none).
    """
    cues = np.array([cue_vector(text) for text, _, _ in prompts], dtype=np.float64).reshape(len(prompts), -1)
    continuous = np.array([name in CONTINUOUS_CUES and name != "requested" for name in CUE_NAMES])
    center = np.where(continuous, cues.mean(axis=0), 0.0)
    scale = np.where(continuous, cues.std(axis=0) + 1e-6, 1.0)
    log_tokens = np.array([math.log1p(prompt_size(p)) for p, _, _ in prompts])
    spec = LengthFeatureSpec(
        cue_names=list(CUE_NAMES),
        cue_center=center.tolist(),
        cue_scale=scale.tolist(),
        tokens_center=float(log_tokens.mean()),
        tokens_scale=float(log_tokens.std() + 1e-6),
        embedding_weight=EMBEDDING_WEIGHT,
        cue_weight=CUE_WEIGHT,
        tokens_weight=TOKENS_WEIGHT,
        task_interaction=TASK_INTERACTION,
        ridge=RIDGE_GRID[1],
        model_ridge=MODEL_RIDGE,
    )
    features = LengthFeatures(spec, embeddings.shape[1])
    x = np.stack([features.vector(embeddings[i], text, tokens) for i, (text, tokens, _) in enumerate(prompts)])
    names = sorted({r.model for r in rows})
    index = {name: i for i, name in enumerate(names)}
    task_index = {t: i for i, t in enumerate(task_types)}
    task = np.array([task_index.get(t, -1) if t is not None else -1 for _, _, t in prompts], dtype=np.int64)
    row_prompt = np.array([r.prompt for r in rows], dtype=np.int64)
    data = _Data(
        x=x,
        task=task,
        row_prompt=row_prompt,
        row_model=np.array([index[r.model] for r in rows], dtype=np.int64),
        row_group=np.where(task[row_prompt] >= 0, task[row_prompt], len(task_types)),
        y=np.array([float(np.mean(np.log1p(r.samples))) for r in rows]),
        censor=np.array([math.log1p(r.censored_at) if r.censored_at is not None else math.nan for r in rows]),
        n_models=len(names),
        n_groups=len(task_types) + 1,
    )
    samples = [np.asarray(r.samples, dtype=np.float64) for r in rows]
    folds = np.random.default_rng(_SEED).integers(0, FOLDS, len(prompts))
    base_oof = np.full(len(rows), np.nan)
    best: tuple[float, float, NDArray[np.float64]] | None = None
    for ridge in RIDGE_GRID:
        oof = np.full(len(rows), np.nan)
        for f in range(FOLDS):
            train = np.flatnonzero(folds != f)
            held = np.isin(row_prompt, np.flatnonzero(folds == f))
            if not held.any() or len(train) < 2:
                continue
            fit = _fit(data, train, ridge)
            oof[held], base_oof[held] = _predict_rows(data, fit, np.flatnonzero(held))
        score = _median_ape(oof, samples, data.censor)
        if best is None or score < best[0]:
            best = (score, ridge, oof)
    assert best is not None
    _, ridge, oof = best
    spec = spec.model_copy(update={"ridge": ridge})
    final = _fit(data, np.arange(len(prompts)), ridge)
    weights = _primal(data, final)
    use_prompt: dict[int, bool] = {}
    apes: dict[int, tuple[float, float]] = {}
    for m in range(data.n_models):
        mine = data.row_model == m
        apes[m] = (_median_ape(oof, samples, data.censor, mine), _median_ape(base_oof, samples, data.censor, mine))
        prompt_ape, task_ape = apes[m]
        use_prompt[m] = bool(
            np.isfinite(prompt_ape)
            and (not np.isfinite(task_ape) or prompt_ape < task_ape)
            and clearly_better(
                _log_errors(oof, samples, data.censor, mine) - _log_errors(base_oof, samples, data.censor, mine)
            )
        )
    held = np.array([oof[i] if use_prompt[int(m)] else base_oof[i] for i, m in enumerate(data.row_model)])
    longest_seen = {  # what was measured, before censored answers' draws beyond the budget stand in for them
        m: max((float(np.max(samples[i])) for i in np.flatnonzero(data.row_model == m).tolist()), default=0.0)
        for m in range(data.n_models)
    }
    samples = _with_censored_draws(held, samples, data)
    usable = np.flatnonzero(np.isfinite(held))
    blocks = np.where(data.row_group == data.n_groups - 1, 0, data.row_group + 1)
    budgets: dict[int, int] = {}  # model -> its generation budget (the largest a row was censored at)
    for r, m in zip(rows, data.row_model.tolist(), strict=True):
        if r.censored_at is not None:
            budgets[m] = max(budgets.get(m, 0), r.censored_at)
    log_caps = np.array([math.log1p(budgets[m]) if m in budgets else math.inf for m in range(data.n_models)])
    edges, by_bin, corrections = calibrate(
        held[usable],
        held[usable] - base_oof[usable],
        [samples[i] for i in usable.tolist()],
        data.row_model[usable],
        blocks[usable],
        data.n_models,
        data.n_groups,
        log_caps[data.row_model[usable]],
    )
    lengths: dict[str, ModelLength] = {}
    for name, m in index.items():
        mine = np.flatnonzero(data.row_model == m).tolist()
        censored = [c for i in mine if (c := rows[i].censored_at) is not None]
        prompt_ape, task_ape = apes[m]
        lengths[name] = ModelLength(
            n_rows=len(mine),
            form="prompt" if use_prompt[m] else "task",
            offsets=np.concatenate(([final.offsets[m, -1]], final.offsets[m, :-1])).tolist(),
            weights=weights[m].tolist() if use_prompt[m] else [],
            corrections=corrections[m].tolist(),
            cv_median_ape=prompt_ape if np.isfinite(prompt_ape) else None,
            cv_median_ape_task_only=task_ape if np.isfinite(task_ape) else None,
            censored_at=max(censored) if censored else None,
            n_censored=len(censored),
            max_output_tokens_seen=int(longest_seen[m]),
        )
    calibration = LengthCalibration(quantile=QUANTILE, edges=edges, by_bin=by_bin)
    return spec, lengths, calibration, _task_classifier(data)


def _with_censored_draws(held: NDArray[Any], samples: Sequence[NDArray[Any]], data: _Data) -> list[NDArray[np.float64]]:
    """The rows' samples, censored rows' replaced by draws beyond their budget (per model's residual fit)."""
    out = [np.asarray(s, dtype=np.float64) for s in samples]
    censored = np.isfinite(data.censor) & np.isfinite(held)
    rng = np.random.default_rng(_SEED)
    for m in np.unique(data.row_model[censored]):
        mine = (data.row_model == m) & np.isfinite(held)
        y = np.array([float(np.mean(np.log1p(out[i]))) for i in np.flatnonzero(mine)])
        shift, s = _residual_normal(y - held[mine], np.where(censored[mine], data.censor[mine] - held[mine], np.nan))
        cut = np.flatnonzero(censored & (data.row_model == m))
        draws = _draw_censored(held[cut], data.censor[cut], shift, s, rng)
        for j, i in enumerate(cut.tolist()):
            out[i] = draws[j]
    return out


def _task_classifier(data: _Data) -> list[list[float]]:
    """Per task, ridge weights scoring how much a prompt looks like the task's (one against the rest);
    empty with fewer than two tasks."""
    n_tasks = data.n_groups - 1
    known = np.flatnonzero(data.task >= 0)
    if n_tasks < 2 or len(known) < 2:
        return []
    x = data.x[known]
    labels = -np.ones((len(known), n_tasks))
    labels[np.arange(len(known)), data.task[known]] = 1.0
    dual = np.linalg.solve(x @ x.T + CLASSIFIER_RIDGE * np.eye(len(known)), labels)
    return (x.T @ dual).T.tolist()


def _kernel(data: _Data, left: NDArray[np.int64], right: NDArray[np.int64]) -> NDArray[np.float64]:
    """Kernel between prompts: dot product, times ``1 + TASK_INTERACTION**2`` within a task."""
    gram = data.x[left] @ data.x[right].T
    same = (data.task[left][:, None] == data.task[right][None, :]) & (data.task[left][:, None] >= 0)
    return gram * (1.0 + TASK_INTERACTION**2 * same)


def _offsets(data: _Data, rows: NDArray[np.int64], y: NDArray[np.float64]) -> tuple[NDArray[Any], NDArray[Any]]:
    """(M, T + 1) offsets shrunk toward model mean + task effect, and the model means."""
    m, g = data.row_model[rows], data.row_group[rows]
    overall = float(y.mean()) if len(y) else 0.0
    counts_m = np.bincount(m, minlength=data.n_models)
    model_mean = np.where(counts_m > 0, np.bincount(m, y, minlength=data.n_models) / np.maximum(counts_m, 1), overall)
    resid = y - model_mean[m]
    counts_g = np.bincount(g, minlength=data.n_groups)
    task_effect = np.bincount(g, resid, minlength=data.n_groups) / np.maximum(counts_g, 1)
    sums = np.zeros((data.n_models, data.n_groups))
    counts = np.zeros((data.n_models, data.n_groups))
    np.add.at(sums, (m, g), y)
    np.add.at(counts, (m, g), 1.0)
    prior = model_mean[:, None] + task_effect[None, :]
    return (sums + OFFSET_PRIOR * prior) / (counts + OFFSET_PRIOR), model_mean


def _fit(data: _Data, prompts: NDArray[np.int64], ridge: float) -> _Fit:
    """The fit on the rows of ``prompts`` (censored targets imputed, ``CENSOR_ITERATIONS`` times)."""
    rows = np.flatnonzero(np.isin(data.row_prompt, prompts))
    y = data.y[rows].copy()
    censored = np.isfinite(data.censor[rows])
    fit = _fit_once(data, prompts, rows, y, ridge)
    for _ in range(CENSOR_ITERATIONS if censored.any() else 0):
        mu = _predict_rows(data, fit, rows)[0]
        imputed = _impute_censored(data, rows, y, mu, censored)
        moved = float(np.max(np.abs(imputed - y)))
        y = imputed
        fit = _fit_once(data, prompts, rows, y, ridge)
        if moved < 1e-3:
            break
    return fit


def _fit_once(
    data: _Data, prompts: NDArray[np.int64], rows: NDArray[np.int64], y: NDArray[np.float64], ridge: float
) -> _Fit:
    offsets, model_mean = _offsets(data, rows, y)
    local = {int(p): i for i, p in enumerate(prompts)}
    row_local = np.array([local[int(p)] for p in data.row_prompt[rows]], dtype=np.int64)
    resid = y - offsets[data.row_model[rows], data.row_group[rows]]
    counts = np.bincount(row_local, minlength=len(prompts)).astype(np.float64)
    mean_resid = np.bincount(row_local, resid, minlength=len(prompts)) / np.maximum(counts, 1.0)
    kernel = _kernel(data, prompts, prompts)
    alpha = np.linalg.solve(kernel + ridge * np.diag(1.0 / np.maximum(counts, 1.0)), mean_resid)
    left = resid - (kernel @ alpha)[row_local]
    betas: dict[int, tuple[NDArray[np.int64], NDArray[np.float64]]] = {}
    for m in range(data.n_models):
        mine = np.flatnonzero(data.row_model[rows] == m)
        if len(mine) >= MIN_MODEL_ROWS:
            idx = row_local[mine]
            beta = np.linalg.solve(kernel[np.ix_(idx, idx)] + MODEL_RIDGE * np.eye(len(idx)), left[mine])
            betas[m] = (idx, beta)
    return _Fit(offsets, model_mean, prompts, np.asarray(alpha, dtype=np.float64), betas)


def _predict_rows(data: _Data, fit: _Fit, rows: NDArray[np.int64]) -> tuple[NDArray[Any], NDArray[Any]]:
    """``mu`` of the prompt form and of the offsets alone, for ``rows`` (their prompts may be unseen)."""
    base = fit.offsets[data.row_model[rows], data.row_group[rows]]
    unique, inverse = np.unique(data.row_prompt[rows], return_inverse=True)
    kernel = _kernel(data, unique, fit.prompts)  # one row per distinct prompt, not per answer
    mu = base + (kernel @ fit.alpha)[inverse]
    for m, (local, beta) in fit.betas.items():
        mine = np.flatnonzero(data.row_model[rows] == m)
        if len(mine):
            mu[mine] += kernel[inverse[mine]][:, local] @ beta
    return mu, base


def _impute_censored(
    data: _Data, rows: NDArray[np.int64], y: NDArray[np.float64], mu: NDArray[Any], censored: NDArray[np.bool_]
) -> NDArray[np.float64]:
    """Censored targets replaced by ``E[log1p(tokens) | beyond the budget]`` under ``Normal(mu, s)``."""
    try:
        from scipy.special import ndtr
    except ImportError as err:
        raise missing_extra("scipy", "calibrate", "Training length models on censored answers") from err
    out = y.copy()
    models = data.row_model[rows]
    bound = data.censor[rows]
    for m in np.unique(models[censored]):
        mine = models == m
        shift, s = _residual_normal(y[mine] - mu[mine], np.where(censored[mine], bound[mine] - mu[mine], np.nan))
        cut = mine & censored
        center = mu[cut] + shift
        a = (bound[cut] - center) / s
        tail = np.maximum(1.0 - ndtr(a), 1e-12)
        hazard = np.exp(-0.5 * a * a) / math.sqrt(2.0 * math.pi) / tail
        out[cut] = np.maximum(center + s * hazard, bound[cut])
    return out


def _residual_normal(resid: NDArray[Any], lower: NDArray[Any]) -> tuple[float, float]:
    """Mean and spread of residuals some of which are only lower bounds (``lower`` not NaN): a censored-normal
    maximum likelihood fit, so heavy censoring does not shrink them as the uncensored ones alone would."""
    from scipy.optimize import minimize
    from scipy.special import log_ndtr

    cut = np.isfinite(lower)
    free = resid[~cut]
    bounds = lower[cut]
    if len(free) + len(bounds) < 3:
        return 0.0, DEFAULT_LENGTH_LOG_SIGMA

    def loss(theta: NDArray[Any]) -> float:
        mean, log_s = theta
        s = math.exp(log_s)
        z = (free - mean) / s
        return float(0.5 * z @ z + len(free) * log_s - np.sum(log_ndtr((mean - bounds) / s)))

    start = [float(np.mean(free)) if len(free) else float(np.mean(bounds)), math.log(max(float(np.std(resid)), 0.1))]
    fit = minimize(loss, start, method="L-BFGS-B", bounds=[(None, None), (math.log(0.02), math.log(5.0))])
    return float(fit.x[0]), float(math.exp(fit.x[1]))


def _draw_censored(
    mu: NDArray[Any], bound: NDArray[Any], shift: float, s: float, rng: np.random.Generator
) -> NDArray[np.float64]:
    """``CENSORED_DRAWS`` lengths per censored row, drawn beyond its budget under ``Normal(mu + shift, s)``
    (inverse CDF of the truncated normal): what calibration reads in place of a length it never saw."""
    from scipy.special import ndtr, ndtri

    low = ndtr((bound - mu - shift) / s)
    u = low[:, None] + (1.0 - low[:, None]) * rng.uniform(size=(len(mu), CENSORED_DRAWS))
    return np.expm1(np.maximum(mu[:, None] + shift + s * ndtri(np.clip(u, 1e-12, 1.0 - 1e-12)), bound[:, None]))


def _primal(data: _Data, fit: _Fit) -> NDArray[np.float64]:
    """(M, T + 1, D) weights: block 0 with no (known) task, then each task's."""
    n_tasks = data.n_groups - 1
    factor = TASK_INTERACTION**2

    def lift(prompts: NDArray[np.int64], coef: NDArray[np.float64]) -> NDArray[np.float64]:
        x = data.x[prompts]
        blocks = np.zeros((n_tasks + 1, x.shape[1]))
        shared = x.T @ coef
        blocks[0] = shared
        for t in range(n_tasks):
            own = data.task[prompts] == t
            blocks[t + 1] = shared + factor * (x[own].T @ coef[own])
        return blocks

    common = lift(fit.prompts, fit.alpha)
    out = np.repeat(common[None], data.n_models, axis=0)
    for m, (local, beta) in fit.betas.items():
        out[m] += lift(fit.prompts[local], beta)
    return out


def _log_errors(
    mu: NDArray[Any], samples: Sequence[NDArray[Any]], censor: NDArray[Any], mask: NDArray[Any]
) -> NDArray[Any]:
    """Per row of ``mask``: the mean absolute log error of ``mu`` over its samples (NaN for censored or unpredicted
    rows), for paired comparisons of two forms."""
    out = np.full(len(mu), np.nan)
    for i in np.flatnonzero(mask & np.isfinite(mu) & ~np.isfinite(censor)).tolist():
        out[i] = float(np.mean(np.abs(np.log1p(samples[i]) - mu[i])))
    return out[mask]


def _median_ape(
    mu: NDArray[Any], samples: Sequence[NDArray[Any]], censor: NDArray[Any], mask: NDArray[Any] | None = None
) -> float:
    """Median absolute percentage error of the median ``expm1(mu)`` over every sample of uncensored rows."""
    chosen = np.isfinite(mu) & ~np.isfinite(censor)
    if mask is not None:
        chosen &= mask
    errors = [
        np.abs(math.expm1(mu[i]) - samples[i]) / np.maximum(samples[i], 1.0) for i in np.flatnonzero(chosen).tolist()
    ]
    return float(np.median(np.concatenate(errors))) if errors else math.nan
