"""Per-prompt routing for a router: the trained predictor, the online bandit and the shared store together.

:class:`PromptRouting` is what a router holds: ``predict`` before the decision (a :class:`PromptEstimate`),
``remember`` after it, ``feedback`` and ``observe_lengths`` later (see its docstring for the wiring).
:func:`build_prompt_routing` turns the router's ``prompt_routing`` setting into one.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from langchain_energyrouter.cost import DEFAULT_LENGTH_LOG_SIGMA, LengthDistribution
from langchain_energyrouter.errors import StateError, UnknownModelError
from langchain_energyrouter.prompt.bandit import QUALITY_KIND, BanditOptions, QualityBandit
from langchain_energyrouter.prompt.encoders import HashingEncoder, PromptEncoder
from langchain_energyrouter.prompt.features import FeatureSpace
from langchain_energyrouter.prompt.feedback import FEEDBACK_LOG, MAX_FEEDBACK_KEY_CHARS, FeedbackBook, FeedbackOutcome
from langchain_energyrouter.prompt.repeats import REPEAT_LOG_SIGMA, RepeatLengths
from langchain_energyrouter.state.base import StateStore, update
from langchain_energyrouter.state.refresh import BackgroundRefresh, RefreshesInBackground

if TYPE_CHECKING:
    from langchain_energyrouter.prompt.predictor import PromptPredictor

__all__ = ["PromptEstimate", "PromptRouting", "build_prompt_routing"]

logger = logging.getLogger(__name__)

_DEFAULT_TOKENS = 64.0


class PromptEstimate(NamedTuple):
    """What :meth:`PromptRouting.predict` returns; pass ``accuracy``, ``output_tokens`` and
    ``length_observations`` to ``Scheduler.decide``."""

    accuracy: dict[str, float]
    """Per model expected score for this prompt (``prompt_accuracy=``)."""
    output_tokens: dict[str, LengthDistribution]
    """Per model length of the answer (``prompt_output_tokens=``): a repeat's measured length where this
    conversation was answered before, else :attr:`predicted_output_tokens`."""
    context: tuple[float, ...]
    """The bandit's context of this prompt (kept by :meth:`PromptRouting.remember`)."""
    prior_accuracy: dict[str, float]
    """The prior's expectation (before the bandit's residual): feedback learns the difference."""
    prior_log_tokens: dict[str, float]
    """The prior's ``mu`` of ``log1p(tokens)`` (before the bandit's residual): answers learn the difference."""
    predicted_output_tokens: dict[str, LengthDistribution]
    """The prediction without repeat memory (the predictor and the learned residual)."""
    length_observations: dict[str, int]
    """Answers behind each model's length (``prompt_length_observations=``): the arm's, or the repeat's."""
    conversation: Hashable | None
    """The conversation's key (:func:`~langchain_energyrouter.router.tokens.conversation_key`), if given."""


class PromptRouting(RefreshesInBackground):
    """Per-prompt predictions for a router: trained predictor + online bandit + shared store.

    Wiring in a router (the scheduler is unchanged)::

        est = routing.predict(text, input_tokens, task_type, conversation_key(messages, tools, task_type, cap))
        decision = scheduler.decide(..., prompt_accuracy=est.accuracy, prompt_output_tokens=est.output_tokens,
                                    prompt_length_observations=est.length_observations)
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
        prior_output_tokens: per model mean generated tokens where the predictor has no model; likewise.
        options: bandit tuning (exploration off by default).
        encoder: the encoder when there is no predictor (default: :class:`HashingEncoder`).
        refresh_s: how often, at most, :meth:`predict` starts a background read of other processes' updates.
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
        scored = set(predictor.scored_models) if predictor is not None else set()
        self._fallback_acc = np.array([acc.get(m, 0.5) for m in self.models])
        self._fallback_lengths = tuple(
            LengthDistribution.from_mean(tout.get(m, _DEFAULT_TOKENS), DEFAULT_LENGTH_LOG_SIGMA) for m in self.models
        )
        self._no_prior_accuracy = tuple(m for m in self.models if m not in scored and m not in acc)
        self._no_prior_length = tuple(m for m in self.models if m not in predicted and m not in tout)
        self.book: FeedbackBook[PromptEstimate] = FeedbackBook(feedback_capacity)
        self.repeats = RepeatLengths(feedback_capacity)
        """Measured lengths of prompts asked before (this process only)."""
        self._versions: dict[str, int] = {}
        self._writes = 0
        """This router's writes so far: a read that began before a write may hold an older arm than it wrote."""
        self._written: dict[str, int] = {}
        self._next_refresh = 0.0
        self._lock = threading.Lock()
        self._background = BackgroundRefresh(
            lambda: self.refresh(force=True), refresh_s, f"energyrouter-refresh-{QUALITY_KIND}"
        )
        self.errors = 0
        """Store failures so far (learning is skipped, routing goes on)."""
        self.refresh(force=True)

    # -- prediction ------------------------------------------------------------
    def predict(
        self, text: str, input_tokens: int | None, task_type: str | None, conversation: Hashable | None = None
    ) -> PromptEstimate:
        """Per-model expected score and answer length for this prompt (prior + learned residual).

        ``conversation`` (:func:`~langchain_energyrouter.router.tokens.conversation_key`): where this very
        conversation (every turn, task type and cap) was answered before, the measured length is used.

        It never waits on the store: other processes' updates are read in the background (at most every
        ``refresh_s``) and adopted by a later prediction; :meth:`refresh` reads them now.
        """
        if self.store is not None:
            self._background.poll()
        prior_acc = self._fallback_acc.copy()
        prior = list(self._fallback_lengths)
        if self.predictor is not None:
            x, acc, lengths = self.predictor.estimate(text, input_tokens, task_type)
            for i, m in enumerate(self.models):
                if m in acc:
                    prior_acc[i] = acc[m]
                if m in lengths:
                    prior[i] = lengths[m]
        else:
            x = self.space.vector(text, input_tokens, task_type)
        emb = x[: self._emb_dim].astype(np.float64)
        prior_mu = np.array([d.mu for d in prior])
        z = np.concatenate(([1.0], self._projection @ emb))
        score, mu = self.bandit.adjust(z, prior_acc, prior_mu)
        names = self.models
        acc_out = dict(zip(names, score.tolist(), strict=True))
        len_out = {m: d._replace(mu=mu_m) for m, d, mu_m in zip(names, prior, mu.tolist(), strict=True)}
        observed = {m: self.bandit.observations(m)[1] for m in names}
        for m in self._no_prior_accuracy:  # neither predictor nor caller knows it: the scheduler's profile does
            if self.bandit.observations(m)[0] == 0:
                del acc_out[m]
        for m in self._no_prior_length:
            if observed[m] == 0:
                del len_out[m]
        predicted = dict(len_out)
        if conversation is not None and len(self.repeats):
            for m in names:
                seen = self.repeats.get(m, conversation)
                if seen is not None:
                    len_out[m] = LengthDistribution(math.log1p(seen.output_tokens), REPEAT_LOG_SIGMA)
                    observed[m] = max(observed[m], seen.n)
        return PromptEstimate(
            acc_out,
            len_out,
            tuple(z.tolist()),
            dict(zip(names, prior_acc.tolist(), strict=True)),
            dict(zip(names, prior_mu.tolist(), strict=True)),
            predicted,
            observed,
            conversation,
        )

    def remember(self, run_id: str, model: str, estimate: PromptEstimate) -> None:
        """Keep what run ``run_id`` was (its estimate and the model chosen) for later feedback."""
        if model not in self.models:
            raise UnknownModelError(f"Cannot remember run {run_id!r} on {model!r}: candidates are {list(self.models)}.")
        self.book.put(str(run_id), model, estimate)

    # -- learning --------------------------------------------------------------
    def feedback(self, run_id: str, score: float, *, key: str | None = None) -> bool:
        """Learn the score (0 to 1) of run ``run_id``'s answer; True when the bandit learned from it.

        Each run learns from its first score only; see :meth:`feedback_outcome` (which says why not).
        """
        return self.feedback_outcome(run_id, score, key=key) == "learned"

    def feedback_outcome(self, run_id: str, score: float, *, key: str | None = None) -> FeedbackOutcome:
        """Learn the score (0 to 1) of run ``run_id``'s answer, and say what became of it.

        The first score of a remembered run wins: its row goes to the store's ``"feedback"`` log first (never
        lost), then updates the chosen model's arm by compare-and-swap. A later score for that run is
        ``"already_scored"``, and one for a run never remembered (or dropped from the bounded book)
        ``"unknown_run"``: neither is learned nor kept, so replaying or inventing run ids costs no memory.

        Raises:
            ValueError: ``score`` is not a finite number in [0, 1], or ``key`` is over
                :data:`~langchain_energyrouter.prompt.feedback.MAX_FEEDBACK_KEY_CHARS` characters.
        """
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0.0 <= score <= 1.0:
            raise ValueError(f"Feedback score {score!r} for run {run_id!r}; give a number from 0 (wrong) to 1 (right).")
        if key is not None and len(key) > MAX_FEEDBACK_KEY_CHARS:
            raise ValueError(
                f"Feedback key of {len(key)} characters for run {run_id!r}; a key names the feedback (e.g. "
                f"'correctness') in at most {MAX_FEEDBACK_KEY_CHARS} characters."
            )
        run = self.book.claim(str(run_id))
        if isinstance(run, str):
            return run
        if self.store is not None:
            event: dict[str, Any] = {"run_id": str(run_id), "score": float(score), "time_unix_s": time.time()}
            if key is not None:
                event["key"] = key
            event["model"] = run.model
            event["context"] = list(run.estimate.context)
            event["prior_score"] = run.estimate.prior_accuracy[run.model]
            try:
                self.store.append(FEEDBACK_LOG, event)
            except StateError as err:
                self._store_failed("append", err)
        residual = float(score) - run.estimate.prior_accuracy[run.model]
        if self._learn(run.model, [(run.estimate.context, residual)], length=False):
            return "learned"
        self.book.release(str(run_id))
        return "not_learned"

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
            if run.estimate.conversation is not None:
                self.repeats.put(run.model, run.estimate.conversation, output_tokens, capped=capped)
            observed = math.log1p(output_tokens)
            said = run.estimate.predicted_output_tokens.get(run.model)
            predicted = said.mu if said is not None else run.estimate.prior_log_tokens[run.model]
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
            self._wrote(model)
        return True

    # -- sharing ---------------------------------------------------------------
    def refresh(self, *, force: bool = False) -> None:
        """Adopt arms other routers wrote since the last look, now, in this thread (blocking on the store).

        Without ``force`` it reads at most every ``refresh_s``. :meth:`predict` reads in the background instead.
        """
        if self.store is None:
            return
        now = time.monotonic()
        if not force and now < self._next_refresh:
            return
        self._next_refresh = now + self.refresh_s
        began = self._writes
        try:
            documents = self.store.items(QUALITY_KIND)
        except StateError as err:
            self._store_failed("read", err)
            return
        with self._lock:
            for model in self.models:
                if self._written.get(model, 0) > began:
                    continue  # this router wrote it after the read began: what was read may be older
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
                self._wrote(name)
                self.bandit.load_arm_state(name, None)
        return removed

    def _wrote(self, model: str) -> None:
        """Note a write of ``model``'s arm (under the lock)."""
        self._writes += 1
        self._written[model] = self._writes

    def _store_failed(self, what: str, err: StateError) -> None:
        self.errors += 1
        logger.warning("Quality-state store %s failed (%s); routing goes on with the predictions it has.", what, err)


def build_prompt_routing(spec: Any, profile: Any, models: list[str], store: StateStore) -> Any:
    """The router's ``prompt_routing`` setting as a :class:`PromptRouting` (or None).

    A predictor (or the path of one) gets a router-owned ``PromptRouting`` whose bandit state lives in
    the router's store, with the profile's accuracies as the prior for models the predictor lacks.
    The predictor file and its encoder are loaded only here, only when per-prompt routing is configured.
    """
    from langchain_energyrouter.prompt.predictor import PromptPredictor

    if spec is None:
        return None

    if isinstance(spec, PromptRouting):
        return spec
    predictor = spec if isinstance(spec, PromptPredictor) else PromptPredictor.load(spec)
    accuracy = {name: profile.models[name].accuracy for name in models}
    return PromptRouting(models, predictor, store, prior_accuracy=accuracy)
