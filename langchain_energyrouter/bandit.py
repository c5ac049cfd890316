"""Learning per-prompt quality online: a linear contextual bandit on top of the trained predictor.

Per model (arm) the bandit learns the *residual* of the prior: the score it observes minus
the prior's expected score for that prompt (the trained :class:`~langchain_energyrouter.quality.PromptPredictor`,
or the profile's static accuracy without one), as a ridge regression on a compact context
``z = [1, P @ embedding]`` (``P``: the predictor's principal directions of the
training embeddings, 16 by default; a fixed random projection without a predictor). So with
no feedback it predicts exactly the prior, and each feedback moves only that model's estimate
for prompts like the one it was about.

* **Incremental.** Each arm keeps ``A^-1`` and ``b`` of the ridge problem
  ``A = lambda I + sum z z^T``; one observation is a Sherman-Morrison update of ``A^-1``
  (O(k^2), k = 17), never a matrix inverse.
* **Exploration off by default.** ``exploration=0`` predicts the posterior mean (greedy, as a
  production router should unless told otherwise); ``> 0`` adds ``exploration * sqrt(z^T A^-1 z)``
  (``"ucb"``, LinUCB) or samples the coefficients from ``N(theta, exploration^2 A^-1)``
  (``"thompson"``).
* **Lengths.** Measured output lengths update a second ridge residual model of
  ``log1p(tokens)`` per arm; an answer cut at its cap says only "at least the cap", so it is
  used only when it raises the estimate (as :class:`~langchain_energyrouter.online.OutputLengthLearner` does).
* **Shared.** Each arm's state is a document of the learned-state store (kind ``"quality"``,
  key = model) written by compare-and-swap (:func:`~langchain_energyrouter.state.base.update`),
  so routers in several processes add to one state; every feedback row is also appended to
  the event log ``"feedback"`` first, so none is lost even when a write fails.

:class:`PromptRouting` is what a router holds: ``predict`` before the decision, ``remember``
after it, ``feedback`` and ``observe_length`` later (see its docstring for the wiring).
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np

from langchain_energyrouter.errors import StateError, UnknownModelError
from langchain_energyrouter.features import FeatureSpace, HashingEncoder, PromptEncoder
from langchain_energyrouter.state.base import StateStore, update

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from langchain_energyrouter.quality import PromptPredictor

__all__ = [
    "FEEDBACK_LOG",
    "QUALITY_KIND",
    "BanditOptions",
    "FeedbackBook",
    "PromptEstimate",
    "PromptRouting",
    "QualityBandit",
    "RepeatLengths",
    "forward_feedback",
]

logger = logging.getLogger(__name__)

QUALITY_KIND = "quality"
"""Store kind of the bandit's per-model documents."""
FEEDBACK_LOG = "feedback"
"""Store event log of every feedback row (run id, model, score, context)."""
STATE_VERSION = 1
_DEFAULT_TOKENS = 64.0


@dataclass(frozen=True)
class BanditOptions:
    """Tuning of :class:`QualityBandit`."""

    exploration: float = 0.0
    """0: greedy (the default); > 0: the UCB width multiplier or the Thompson sampling scale."""
    algorithm: Literal["ucb", "thompson"] = "ucb"
    prior_weight: float = 4.0
    """Ridge ``lambda`` of the score arms: how many observations' worth of trust the prior gets."""
    length_prior_weight: float = 0.5
    """Ridge ``lambda`` of the length arms. Every answered call measures its length (feedback on quality
    is rare), and a deployment asks the same templated prompts again and again, so lengths adapt fast."""
    projection_dims: int = 16
    """Size of the random projection when there is no trained predictor."""
    seed: int = 0
    """Seed of the random projection (and of Thompson sampling)."""

    def __post_init__(self) -> None:
        if not math.isfinite(self.exploration) or self.exploration < 0:
            raise ValueError(f"exploration={self.exploration!r}; use 0 (off) or a positive number such as 0.5.")
        if self.algorithm not in ("ucb", "thompson"):
            raise ValueError(f"algorithm={self.algorithm!r}; use 'ucb' or 'thompson'.")
        if not self.prior_weight > 0:
            raise ValueError(f"prior_weight={self.prior_weight!r}; use a positive number (4 is the default).")
        if not self.length_prior_weight > 0:
            raise ValueError(
                f"length_prior_weight={self.length_prior_weight!r}; use a positive number (0.5 is the default)."
            )


class _Ridge:
    """``A^-1`` and ``b`` of a ridge regression with Sherman-Morrison updates."""

    __slots__ = ("a_inv", "b", "n")

    def __init__(self, k: int, lam: float) -> None:
        self.a_inv = np.eye(k) / lam
        self.b = np.zeros(k)
        self.n = 0

    def add(self, z: NDArray[Any], y: float) -> None:
        az = self.a_inv @ z
        self.a_inv -= np.outer(az, az) / (1.0 + float(z @ az))
        self.b += y * z
        self.n += 1

    @property
    def theta(self) -> NDArray[Any]:
        return self.a_inv @ self.b

    def to_state(self) -> dict[str, Any]:
        return {"a_inv": self.a_inv.ravel().tolist(), "b": self.b.tolist(), "n": self.n}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], k: int) -> _Ridge:
        r = cls.__new__(cls)
        r.a_inv = np.array(state["a_inv"], dtype=np.float64).reshape(k, k)
        r.b = np.array(state["b"], dtype=np.float64).reshape(k)
        r.n = int(state["n"])
        return r


class QualityBandit:
    """Per-arm ridge residual models of score and log length over a compact context (see the module docstring).

    Args:
        models: the arms.
        k: context size (``1 + projection rows``).
        options: tuning.
    """

    def __init__(self, models: Sequence[str], k: int, options: BanditOptions | None = None) -> None:
        self.options = options or BanditOptions()
        self.k = k
        self.models = tuple(models)
        self._score = {m: _Ridge(k, self.options.prior_weight) for m in self.models}
        self._length = {m: _Ridge(k, self.options.length_prior_weight) for m in self.models}
        self._rng = np.random.default_rng(self.options.seed)
        self._compile()

    def _compile(self) -> None:
        """Stack every arm's coefficients so a prediction is one matrix product."""
        self._theta = np.array([self._score[m].theta for m in self.models]).reshape(len(self.models), self.k)
        self._theta_len = np.array([self._length[m].theta for m in self.models]).reshape(len(self.models), self.k)
        self._a_inv = np.array([self._score[m].a_inv for m in self.models]).reshape(len(self.models), self.k, self.k)

    def adjust(
        self, z: NDArray[Any], prior_score: NDArray[Any], prior_log_len: NDArray[Any]
    ) -> tuple[NDArray[Any], NDArray[Any]]:
        """Scores (clipped to [0, 1]) and log1p lengths: the prior plus the learned residual (+ exploration)."""
        theta = self._theta
        opts = self.options
        if opts.exploration > 0 and opts.algorithm == "thompson":
            noise = self._rng.standard_normal((len(self.models), self.k))
            chol = np.linalg.cholesky(self._a_inv + 1e-12 * np.eye(self.k))
            theta = theta + opts.exploration * np.einsum("mij,mj->mi", chol, noise)
        score = prior_score + theta @ z
        if opts.exploration > 0 and opts.algorithm == "ucb":
            score = score + opts.exploration * np.sqrt(np.maximum(np.einsum("i,mij,j->m", z, self._a_inv, z), 0.0))
        return np.clip(score, 0.0, 1.0), prior_log_len + self._theta_len @ z

    def update(self, model: str, z: NDArray[Any], residual: float) -> None:
        """Learn one score residual (observed score - prior's expectation) of ``model``."""
        self._arm(model, self._score).add(z, residual)
        self._compile()

    def update_length(self, model: str, z: NDArray[Any], residual: float) -> None:
        """Learn one ``log1p(tokens)`` residual of ``model``."""
        self._arm(model, self._length).add(z, residual)
        self._compile()

    def observations(self, model: str) -> tuple[int, int]:
        """Score and length observations learned for ``model``."""
        return self._score[model].n, self._length[model].n

    def _arm(self, model: str, arms: dict[str, _Ridge]) -> _Ridge:
        try:
            return arms[model]
        except KeyError:
            raise UnknownModelError(f"The bandit has no arm {model!r}; arms are {list(self.models)}.") from None

    def arm_state(self, model: str) -> dict[str, Any]:
        return {"version": STATE_VERSION, "k": self.k, "score": self._score[model].to_state(),
                "length": self._length[model].to_state()}  # fmt: skip

    def load_arm_state(self, model: str, state: Mapping[str, Any] | None) -> None:
        """Install a stored arm (None: back to the prior)."""
        if state is None:
            self._score[model] = _Ridge(self.k, self.options.prior_weight)
            self._length[model] = _Ridge(self.k, self.options.length_prior_weight)
        else:
            if int(state.get("version", 0)) != STATE_VERSION or int(state.get("k", -1)) != self.k:
                raise StateError(f"Stored bandit state of {model!r} has another version or size; it is reset.")
            self._score[model] = _Ridge.from_state(state["score"], self.k)
            self._length[model] = _Ridge.from_state(state["length"], self.k)
        self._compile()


class PromptEstimate(NamedTuple):
    """What :meth:`PromptRouting.predict` returns; pass ``accuracy``/``output_tokens`` to ``Scheduler.decide``."""

    accuracy: dict[str, float]
    """Per model expected score for this prompt (``prompt_accuracy=``)."""
    output_tokens: dict[str, float]
    """Per model expected generated tokens (``prompt_output_tokens=``)."""
    context: tuple[float, ...]
    """The bandit's context of this prompt (kept by :meth:`PromptRouting.remember`)."""
    prior_accuracy: dict[str, float]
    """The prior's expectation (before the bandit's residual): feedback learns the difference."""
    prior_log_tokens: dict[str, float]


class _Run(NamedTuple):
    model: str
    estimate: PromptEstimate


class FeedbackBook:
    """Run id -> (estimate, model chosen), bounded (oldest dropped first) and thread-safe."""

    def __init__(self, capacity: int = 10000) -> None:
        if capacity < 1:
            raise ValueError(f"FeedbackBook(capacity={capacity}); keep at least 1 run.")
        self.capacity = capacity
        self._runs: OrderedDict[str, _Run] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, run_id: str, model: str, estimate: PromptEstimate) -> None:
        with self._lock:
            self._runs[run_id] = _Run(model, estimate)
            self._runs.move_to_end(run_id)
            while len(self._runs) > self.capacity:
                self._runs.popitem(last=False)

    def get(self, run_id: str) -> _Run | None:
        with self._lock:
            return self._runs.get(run_id)

    def __len__(self) -> int:
        return len(self._runs)


class RepeatLengths:
    """Measured answer lengths of prompts seen before, per model: bounded (oldest dropped) and thread-safe.

    The same prompt to the same model gives the same answer under greedy decoding, and about the
    same length under sampling; deployments ask templated prompts again and again. A repeated
    prompt's measured length is a better prediction than any model of lengths, so it is used as is
    (an exponentially weighted mean when it varies). Keys are the prompt's feature vector, so
    anything that changes the features (text, task type, token count) is a new prompt. A length cut
    by the cap is only a lower bound: it is kept only where nothing longer is known.
    """

    def __init__(self, capacity: int = 10000, weight: float = 0.5) -> None:
        if capacity < 1:
            raise ValueError(f"RepeatLengths(capacity={capacity}); keep at least 1 prompt.")
        self.capacity = capacity
        self.weight = weight
        self._seen: OrderedDict[tuple[str, int], tuple[float, bool]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(model: str, context: Sequence[float]) -> tuple[str, int]:
        return model, hash(tuple(context))

    def get(self, model: str, context: Sequence[float]) -> float | None:
        with self._lock:
            found = self._seen.get(self.key(model, context))
        return None if found is None else found[0]

    def put(self, model: str, context: Sequence[float], output_tokens: float, *, capped: bool) -> None:
        key = self.key(model, context)
        with self._lock:
            old = self._seen.get(key)
            if old is None or (old[1] and output_tokens >= old[0]):
                value = (float(output_tokens), capped)
            elif capped:
                value = old if old[0] >= output_tokens else (float(output_tokens), True)
            else:
                value = (old[0] + self.weight * (float(output_tokens) - old[0]), False)
            self._seen[key] = value
            self._seen.move_to_end(key)
            while len(self._seen) > self.capacity:
                self._seen.popitem(last=False)

    def __len__(self) -> int:
        return len(self._seen)


class PromptRouting:
    """Per-prompt predictions for a router: trained predictor + online bandit + shared store.

    Wiring in a router (the scheduler is unchanged)::

        est = routing.predict(text, input_tokens, task_type)
        decision = scheduler.decide(..., prompt_accuracy=est.accuracy, prompt_output_tokens=est.output_tokens)
        routing.remember(run_id, decision.model, est)
        ...  # after the call
        routing.observe_length(run_id, generated_tokens, capped=generated_tokens >= max_new_tokens)
        ...  # whenever the score of that answer is known
        routing.feedback(run_id, score)

    Args:
        models: the router's candidates.
        predictor: the trained predictor (None: the bandit starts from ``prior_accuracy``).
        store: where the learned state and feedback log live (None: nothing is learned online).
        prior_accuracy: per model accuracy where the predictor has no model (pass the profile's); a model
            in neither is left out of the estimates (the scheduler uses its profile) until feedback arrives.
        prior_output_tokens: per model generated tokens where the predictor has no model; likewise.
        options: bandit tuning (exploration off by default).
        encoder: the encoder when there is no predictor (default: :class:`HashingEncoder`).
        refresh_s: how often, at most, to read other processes' updates.
        feedback_capacity: runs remembered for later feedback.
    """

    def __init__(
        self,
        models: Sequence[str],
        predictor: PromptPredictor | None = None,
        store: StateStore | None = None,
        *,
        prior_accuracy: Mapping[str, float] | None = None,
        prior_output_tokens: Mapping[str, float] | None = None,
        options: BanditOptions | None = None,
        encoder: PromptEncoder | None = None,
        refresh_s: float = 1.0,
        feedback_capacity: int = 10000,
    ) -> None:
        self.models = tuple(models)
        self.predictor = predictor
        self.store = store
        self.options = options or BanditOptions()
        acc = dict(prior_accuracy or {})
        tout = dict(prior_output_tokens or {})
        if predictor is not None:
            self.space = predictor.space
            projection = predictor.projection
            origin = f"predictor:{predictor.fingerprint}"
        else:
            self.space = FeatureSpace(encoder or HashingEncoder())
            rng = np.random.default_rng(self.options.seed)
            k = self.options.projection_dims
            projection = (rng.standard_normal((k, self.space.encoder.dim)) / math.sqrt(k)).astype(np.float32)
            origin = f"static:{self.space.encoder.name}:{k}:{self.options.seed}"
        self._projection = np.asarray(projection, dtype=np.float64)
        self._emb_dim = self.space.encoder.dim
        k = 1 + self._projection.shape[0]
        self.bandit = QualityBandit(self.models, k, self.options)
        self.fingerprint = hashlib.sha256(f"{origin}|{self.options.prior_weight}".encode()).hexdigest()[:16]
        predicted = set(predictor.models) if predictor is not None else set()
        self._fallback_acc = np.array([acc.get(m, 0.5) for m in self.models])
        self._fallback_len = np.log1p(np.array([tout.get(m, _DEFAULT_TOKENS) for m in self.models]))
        self._no_prior_accuracy = tuple(m for m in self.models if m not in predicted and m not in acc)
        self._no_prior_length = tuple(m for m in self.models if m not in predicted and m not in tout)
        self.book = FeedbackBook(feedback_capacity)
        self.repeats = RepeatLengths(feedback_capacity)
        """Measured lengths of prompts asked before (this process only)."""
        self.refresh_s = float(refresh_s)
        self._versions: dict[str, int] = {}
        self._next_refresh = 0.0
        self._lock = threading.Lock()
        self.errors = 0
        """Store failures so far (learning is skipped, routing goes on)."""
        self.refresh(force=True)

    # -- prediction ------------------------------------------------------------
    def predict(self, text: str, input_tokens: int | None, task_type: str | None) -> PromptEstimate:
        """Per-model expected score and generated tokens for this prompt (prior + learned residual)."""
        if self.store is not None:
            self.refresh()
        x = self.space.vector(text, input_tokens, task_type)
        emb = x[: self._emb_dim].astype(np.float64)
        prior_acc = self._fallback_acc.copy()
        prior_len = self._fallback_len.copy()
        if self.predictor is not None:
            acc, tout = self.predictor.predict_vector(x)
            for i, m in enumerate(self.models):
                if m in acc:
                    prior_acc[i] = acc[m]
                    prior_len[i] = math.log1p(tout[m])
        z = np.concatenate(([1.0], self._projection @ emb))
        score, log_len = self.bandit.adjust(z, prior_acc, prior_len)
        names = self.models
        acc_out = dict(zip(names, score.tolist(), strict=True))
        len_out = dict(zip(names, np.expm1(log_len).clip(min=0.0).tolist(), strict=True))
        for m in self._no_prior_accuracy:  # neither predictor nor caller knows it: the scheduler's profile does
            if self.bandit.observations(m)[0] == 0:
                del acc_out[m]
        for m in self._no_prior_length:
            if self.bandit.observations(m)[1] == 0:
                del len_out[m]
        context = tuple(z.tolist())
        if len(self.repeats):
            for m in names:
                seen = self.repeats.get(m, context)
                if seen is not None:
                    len_out[m] = seen
        return PromptEstimate(
            acc_out,
            len_out,
            context,
            dict(zip(names, prior_acc.tolist(), strict=True)),
            dict(zip(names, prior_len.tolist(), strict=True)),
        )

    def remember(self, run_id: str, model: str, estimate: PromptEstimate) -> None:
        """Keep what run ``run_id`` was (its estimate and the model chosen) for later feedback."""
        if model not in self.models:
            raise UnknownModelError(f"Cannot remember run {run_id!r} on {model!r}: candidates are {list(self.models)}.")
        self.book.put(str(run_id), model, estimate)

    # -- learning --------------------------------------------------------------
    def feedback(self, run_id: str, score: float, *, key: str | None = None) -> bool:
        """Learn the score (0 to 1) of run ``run_id``'s answer; True when the bandit learned from it.

        The row goes to the store's ``"feedback"`` log first (never lost), then updates the
        chosen model's arm by compare-and-swap. An unknown run id (never remembered, or
        dropped from the bounded book) is logged to the event log as such and returns False.

        Raises:
            ValueError: ``score`` is not a finite number in [0, 1].
        """
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0.0 <= score <= 1.0:
            raise ValueError(f"Feedback score {score!r} for run {run_id!r}; give a number from 0 (wrong) to 1 (right).")
        run = self.book.get(str(run_id))
        if self.store is not None:
            event: dict[str, Any] = {"run_id": str(run_id), "score": float(score), "time_unix_s": time.time()}
            if key is not None:
                event["key"] = key
            if run is not None:
                event["model"] = run.model
                event["context"] = list(run.estimate.context)
                event["prior_score"] = run.estimate.prior_accuracy[run.model]
            try:
                self.store.append(FEEDBACK_LOG, event)
            except StateError as err:
                self._store_failed("append", err)
        if run is None:
            return False
        residual = float(score) - run.estimate.prior_accuracy[run.model]
        return self._learn(run.model, [(run.estimate.context, residual)], length=False)

    def observe_length(self, run_id: str, output_tokens: float, *, capped: bool = False) -> bool:
        """Learn the generated length of run ``run_id``'s answer; ``capped``: it hit its cap (a lower bound)."""
        return self.observe_lengths([(run_id, output_tokens, capped)]) > 0

    def observe_lengths(self, observations: Iterable[tuple[str, float, bool]]) -> int:
        """Learn several answers' lengths, ``(run id, generated tokens, capped)`` each, in order, with one store
        write per model; returns how many taught the bandit something."""
        residuals: dict[str, list[tuple[Sequence[float], float]]] = {}
        for run_id, output_tokens, capped in observations:
            run = self.book.get(str(run_id))
            if run is None or not math.isfinite(output_tokens) or output_tokens < 0:
                continue
            self.repeats.put(run.model, run.estimate.context, output_tokens, capped=capped)
            observed = math.log1p(output_tokens)
            said = run.estimate.output_tokens.get(run.model)
            predicted = math.log1p(said) if said is not None else run.estimate.prior_log_tokens[run.model]
            if capped and observed <= predicted:
                continue  # "at least the cap" says nothing when the prediction is above it already
            residual = observed - run.estimate.prior_log_tokens[run.model]
            residuals.setdefault(run.model, []).append((run.estimate.context, residual))
        return sum(len(items) for model, items in residuals.items() if self._learn(model, items, length=True))

    def _learn(self, model: str, items: Sequence[tuple[Sequence[float], float]], *, length: bool) -> bool:
        """Add ``(context, residual)`` pairs to ``model``'s score (or length) arm: one compare-and-swap."""
        learn = self.bandit.update_length if length else self.bandit.update
        pairs = [(np.asarray(context, dtype=np.float64), residual) for context, residual in items]
        with self._lock:
            if self.store is None:
                for z, residual in pairs:
                    learn(model, z, residual)
                return True

            def change(current: dict[str, Any] | None) -> dict[str, Any]:
                self._adopt(model, current)
                for z, residual in pairs:
                    learn(model, z, residual)
                n_score, n_length = self.bandit.observations(model)
                return {"fingerprint": self.fingerprint, "model": model, "n_score": n_score,
                        "n_length": n_length, "arm": self.bandit.arm_state(model)}  # fmt: skip

            try:
                doc = update(self.store, QUALITY_KIND, model, change)
            except StateError as err:
                self._store_failed("write", err)
                return False
            if doc is not None:
                self._versions[model] = doc.version
        return True

    # -- sharing ---------------------------------------------------------------
    def refresh(self, *, force: bool = False) -> None:
        """Adopt arms other routers wrote since the last look (one cheap read, at most every ``refresh_s``)."""
        if self.store is None:
            return
        now = time.monotonic()
        if not force and now < self._next_refresh:
            return
        self._next_refresh = now + self.refresh_s
        try:
            documents = self.store.items(QUALITY_KIND)
        except StateError as err:
            self._store_failed("read", err)
            return
        with self._lock:
            for model in self.models:
                doc = documents.get(model)
                if doc is None:
                    if model in self._versions:
                        del self._versions[model]
                        self.bandit.load_arm_state(model, None)
                    continue
                if self._versions.get(model) != doc.version:
                    self._versions[model] = doc.version
                    self._adopt(model, doc.payload)

    def _adopt(self, model: str, payload: Mapping[str, Any] | None) -> None:
        if payload is None or payload.get("fingerprint") != self.fingerprint:
            self.bandit.load_arm_state(model, None)  # learned on another predictor: start from this one's prior
            return
        try:
            self.bandit.load_arm_state(model, payload["arm"])
        except (StateError, KeyError, TypeError, ValueError) as err:
            logger.warning("Ignoring learned quality state of %r (%s); starting from the prior.", model, err)
            self.bandit.load_arm_state(model, None)

    def reset(self, model: str | None = None) -> int:
        """Forget what was learned online (one model or all), in the store too; returns documents removed."""
        removed = 0
        with self._lock:
            for name in self.models if model is None else (model,):
                if self.store is not None:
                    removed += self.store.delete(QUALITY_KIND, name)
                self._versions.pop(name, None)
                self.bandit.load_arm_state(name, None)
        return removed

    def _store_failed(self, what: str, err: StateError) -> None:
        self.errors += 1
        logger.warning("Quality-state store %s failed (%s); routing goes on with the predictions it has.", what, err)


def forward_feedback(routing: PromptRouting, feedback: Iterable[Any], *, key: str | None = None) -> int:
    """Pass LangSmith-style feedback objects (``.run_id``, ``.score``, ``.key``) to :meth:`PromptRouting.feedback`.

    LangSmith feedback is created after a run, by a person or an evaluator, through the
    LangSmith client; no LangChain callback fires for it, so a callback handler cannot
    receive it. Read it with ``Client().list_feedback(run_ids=..., feedback_key=[...])``
    and forward it here. Scores outside [0, 1] or missing are skipped.

    Returns:
        How many feedback rows the bandit learned from.
    """
    learned = 0
    for item in feedback:
        if key is not None and getattr(item, "key", None) != key:
            continue
        score = getattr(item, "score", None)
        if isinstance(score, bool):
            score = float(score)
        if not isinstance(score, (int, float)) or not 0.0 <= score <= 1.0:
            continue
        learned += routing.feedback(str(item.run_id), float(score), key=getattr(item, "key", None))
    return learned
