"""The online quality bandit: incremental updates, feedback changing decisions, regret, shared state."""

from __future__ import annotations

import math
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from langchain_energyrouter.cost import LengthDistribution
from langchain_energyrouter.decide.scheduler import Scheduler
from langchain_energyrouter.errors import StateError, UnknownModelError
from langchain_energyrouter.prompt.bandit import QUALITY_KIND, BanditOptions, QualityBandit, _Ridge
from langchain_energyrouter.prompt.encoders import HashingEncoder
from langchain_energyrouter.prompt.feedback import FEEDBACK_LOG, FeedbackBook, forward_feedback
from langchain_energyrouter.prompt.repeats import REPEAT_LOG_SIGMA
from langchain_energyrouter.prompt.routing import PromptRouting
from langchain_energyrouter.router.tokens import conversation_key
from langchain_energyrouter.state import MemoryStateStore, SQLiteStateStore
from langchain_energyrouter.state.base import StateStore
from langchain_energyrouter.testing import tiny_profile

MODELS = ("tiny-a", "tiny-b")
PRIOR = {"tiny-a": 0.4, "tiny-b": 0.8}


def routing(store: StateStore | None = None, **options: object) -> PromptRouting:
    return PromptRouting(
        MODELS,
        None,
        store,
        prior_accuracy=PRIOR,
        prior_output_tokens={"tiny-a": 64.0, "tiny-b": 64.0},
        encoder=HashingEncoder(256),
        options=BanditOptions(**options),  # type: ignore[arg-type]
        refresh_s=0.0,
    )


def test_sherman_morrison_matches_the_direct_ridge_solution() -> None:
    rng = np.random.default_rng(0)
    ridge = _Ridge(5, 2.0)
    z = rng.normal(size=(40, 5))
    y = rng.normal(size=40)
    for zi, yi in zip(z, y, strict=True):
        ridge.add(zi, float(yi))
    direct = np.linalg.solve(2.0 * np.eye(5) + z.T @ z, z.T @ y)
    np.testing.assert_allclose(ridge.theta, direct, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ridge.a_inv, np.linalg.inv(2.0 * np.eye(5) + z.T @ z), rtol=1e-8, atol=1e-12)


def test_without_feedback_the_prior_is_predicted() -> None:
    est = routing().predict("What is 12 plus 30?", 8, None)
    assert est.accuracy == pytest.approx(PRIOR)
    assert est.prior_accuracy == pytest.approx(PRIOR)


def test_feedback_updates_a_decision() -> None:
    store = MemoryStateStore()
    r = routing(store)
    scheduler = Scheduler(tiny_profile(), {"accuracy": 0.95, "energy": 0.05}, normalization="relative")
    prompt = "Say hello to {}."

    def decide(text: str) -> str:
        est = r.predict(text, 6, None)
        return scheduler.decide(6, 16, prompt_accuracy=est.accuracy, prompt_output_tokens=est.output_tokens).model

    assert decide(prompt.format("Anna")) == "tiny-b"  # prior: tiny-a is right 40% of the time
    for i, name in enumerate(["Ben", "Chloe", "Dmitri", "Eve", "Farid", "Grace", "Hiro", "Ines"] * 2):
        est = r.predict(prompt.format(name), 6, None)
        r.remember(f"run-{i}", "tiny-a", est)  # e.g. sent to tiny-a by exploration or a forced call
        assert r.feedback(f"run-{i}", 1.0)
    assert r.predict(prompt.format("Jonas"), 6, None).accuracy["tiny-a"] > 0.85  # 16 rights against a prior worth 4
    assert decide(prompt.format("Jonas")) == "tiny-a"
    events = store.events(FEEDBACK_LOG)
    assert len(events) == 16 and events[0].payload["model"] == "tiny-a" and events[0].payload["score"] == 1.0
    assert store.get(QUALITY_KIND, "tiny-a") is not None and store.get(QUALITY_KIND, "tiny-b") is None


def test_unknown_runs_are_neither_learned_nor_kept() -> None:
    store = MemoryStateStore()
    r = routing(store)
    assert r.feedback_outcome("never-seen", 0.0) == "unknown_run" and r.feedback("never-seen", 0.0) is False
    assert store.events(FEEDBACK_LOG) == []  # invented run ids cost no memory: nothing to learn from them
    r.remember("x", "tiny-a", r.predict("hi", 1, None))
    with pytest.raises(ValueError, match=r"Feedback key of 257 characters .* at most 256 characters"):
        r.feedback("x", 1.0, key="k" * 257)
    assert r.feedback("x", 1.0, key="k" * 256) is True
    with pytest.raises(ValueError, match="from 0"):
        r.feedback("x", 1.5)
    with pytest.raises(UnknownModelError, match="tiny-z"):
        r.remember("x", "tiny-z", r.predict("hi", 1, None))


def test_a_run_learns_from_its_first_score_only() -> None:
    """Replaying one run's score 400 times moved every similar prompt's estimate; now only the first counts."""
    store = MemoryStateStore()
    r = routing(store)
    r.remember("run-1", "tiny-b", r.predict("Say hello to Anna.", 6, None))
    assert r.feedback_outcome("run-1", 0.0) == "learned"
    once = r.predict("What is 12 plus 30?", 8, None).accuracy["tiny-b"]
    assert once < PRIOR["tiny-b"]  # the first score teaches
    replays = [r.feedback_outcome("run-1", 0.0) for _ in range(400)]
    assert set(replays) == {"already_scored"}
    assert r.predict("What is 12 plus 30?", 8, None).accuracy["tiny-b"] == pytest.approx(once, abs=1e-12)
    assert r.bandit.observations("tiny-b") == (1, 0)
    assert [e.payload["score"] for e in store.events(FEEDBACK_LOG)] == [0.0]  # one row per run
    # Concurrent posts for one run: exactly one wins.
    r.remember("run-2", "tiny-b", r.predict("Say hello to Ben.", 6, None))
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda _: r.feedback_outcome("run-2", 0.0), range(64)))
    assert outcomes.count("learned") == 1 and outcomes.count("already_scored") == 63


class _FailingWrites(MemoryStateStore):
    """A memory store whose document writes fail while ``failing`` is set (a network store that is down)."""

    failing = False

    def put(self, kind: str, key: str, payload: Any, *, expected_version: int | None) -> int | None:
        if self.failing:
            raise StateError("store unreachable")
        return super().put(kind, key, payload, expected_version=expected_version)


def test_a_score_the_store_failed_to_keep_can_be_sent_again() -> None:
    store = _FailingWrites()
    r = routing(store)
    r.remember("run-1", "tiny-a", r.predict("Say hi.", 3, None))
    store.failing = True
    assert r.feedback_outcome("run-1", 1.0) == "not_learned"
    store.failing = False
    assert r.feedback_outcome("run-1", 1.0) == "learned"
    assert r.feedback_outcome("run-1", 1.0) == "already_scored"


def _simulate(policy: str, steps: int = 600, seed: int = 0) -> float:
    """Cumulative regret on a stream of 4 prompt families whose best model differs."""
    models = ("m0", "m1", "m2", "m3")
    families = [
        ("What is {} plus {}?", (0.9, 0.2, 0.3, 0.4)),
        ("Say hello to {} and {}.", (0.2, 0.9, 0.3, 0.3)),
        ("Convert {} meters to {} feet.", (0.3, 0.2, 0.9, 0.4)),
        ("Count the letters in {} {}.", (0.3, 0.3, 0.4, 0.9)),
    ]
    rng = random.Random(seed)
    r = PromptRouting(
        models,
        prior_accuracy=dict.fromkeys(models, 0.5),
        encoder=HashingEncoder(512),
        options=BanditOptions(exploration=0.5, algorithm="ucb", prior_weight=1.0),
    )
    regret = 0.0
    for step in range(steps):
        template, p = families[rng.randrange(4)]
        text = template.format(rng.randint(1, 999), rng.choice(["Anna", "Ben", "Kim", "Lu"]))
        if policy == "random":
            i = rng.randrange(4)
        else:
            est = r.predict(text, 8, None)
            i = max(range(4), key=lambda j: (est.accuracy[models[j]], -j))
            r.remember(str(step), models[i], est)
            r.feedback(str(step), 1.0 if rng.random() < p[i] else 0.0)
        regret += max(p) - p[i]
    return regret


def test_bandit_regret_is_below_random() -> None:
    bandit, random_ = _simulate("bandit"), _simulate("random")
    assert bandit < 0.5 * random_, (bandit, random_)


def test_state_is_shared_through_the_store(tmp_path: Path) -> None:
    for store in (MemoryStateStore(), SQLiteStateStore(tmp_path / "state.sqlite")):
        first, second = routing(store), routing(store)
        key = conversation_key([HumanMessage("Add 3 and 4.")])
        est = first.predict("Add 3 and 4.", 6, None, key)
        first.remember("r1", "tiny-a", est)
        first.feedback("r1", 1.0)
        first.remember("r2", "tiny-a", est)
        assert first.observe_length("r2", 200.0)
        learned = first.predict("Add 3 and 4.", 6, None, key)
        assert learned.accuracy["tiny-a"] > est.accuracy["tiny-a"]
        # this router measured this very conversation: its length, with the spread of repeated answers
        assert learned.output_tokens["tiny-a"] == LengthDistribution(math.log1p(200.0), REPEAT_LOG_SIGMA)
        assert learned.length_observations["tiny-a"] == 1
        second.predict("Add 3 and 4.", 6, None, key)  # starts reading the first router's arms, waits for nothing
        assert second.wait_for_refresh(timeout_s=30)
        again = second.predict("Add 3 and 4.", 6, None, key)  # with them
        assert again.accuracy == pytest.approx(learned.accuracy)
        # The length arm is shared (the repeat memory is per process): raised toward what was measured.
        assert est.output_tokens["tiny-a"].mu < again.output_tokens["tiny-a"].mu <= math.log1p(200.0)
        # another prior (another projection) does not inherit state learned on this one
        other = PromptRouting(MODELS, None, store, prior_accuracy=PRIOR, encoder=HashingEncoder(256),
                              options=BanditOptions(seed=1))  # fmt: skip
        assert other.predict("Add 3 and 4.", 6, None).accuracy == pytest.approx(PRIOR)
        assert second.reset() == 1
        first.refresh(force=True)
        assert first.predict("Add 3 and 4.", 6, None).accuracy == pytest.approx(PRIOR)
        store.close()


def test_capped_lengths_only_raise_the_estimate() -> None:
    r = routing()
    est = r.predict("Tell me a story.", 5, None)
    r.remember("a", "tiny-a", est)
    assert r.observe_length("a", 10.0, capped=True) is False  # at least 10: the prior says 64 already
    assert r.observe_length("a", 500.0, capped=True) is True


def test_exploration_widens_estimates_and_is_off_by_default() -> None:
    text = "What is 5 plus 9?"
    assert routing().predict(text, 6, None).accuracy == pytest.approx(PRIOR)
    ucb = routing(exploration=0.3).predict(text, 6, None).accuracy
    assert all(ucb[m] > PRIOR[m] for m in MODELS)
    draws = {round(routing(exploration=0.3, algorithm="thompson", seed=s).predict(text, 6, None).accuracy["tiny-a"], 6)
             for s in range(5)}  # fmt: skip
    assert len(draws) > 1
    with pytest.raises(ValueError, match="exploration"):
        BanditOptions(exploration=-1)
    with pytest.raises(ValueError, match="algorithm"):
        BanditOptions(algorithm="greedy")  # type: ignore[arg-type]


def test_feedback_book_is_bounded() -> None:
    r = routing()
    est = r.predict("hi", 1, None)
    book = FeedbackBook(2)
    for run in ("a", "b", "c"):
        book.put(run, "tiny-a", est)
    assert len(book) == 2 and book.get("a") is None and book.get("c") is not None


def test_langsmith_feedback_is_forwarded() -> None:
    schemas = pytest.importorskip("langsmith.schemas")
    import datetime
    import uuid

    r = routing(MemoryStateStore())
    run_id = uuid.uuid4()
    r.remember(str(run_id), "tiny-a", r.predict("Say hi.", 3, None))
    now = datetime.datetime.now(datetime.timezone.utc)

    def item(key: str, score: float | None) -> object:
        return schemas.Feedback(
            id=uuid.uuid4(), run_id=run_id, trace_id=run_id, key=key, score=score, created_at=now, modified_at=now
        )

    items = [item("correctness", 1), item("helpfulness", 0), item("correctness", None)]
    assert forward_feedback(r, items, key="correctness") == 1
    assert r.bandit.observations("tiny-a") == (1, 0)


def test_models_without_any_prior_are_left_to_the_profile_until_learned() -> None:
    r = PromptRouting(MODELS, prior_accuracy={"tiny-a": 0.4}, encoder=HashingEncoder(64))
    est = r.predict("Say hi.", 3, None)
    assert set(est.accuracy) == {"tiny-a"} and est.output_tokens == {}
    r.remember("r", "tiny-b", est)
    assert r.feedback("r", 1.0) and r.observe_length("r", 30.0)
    again = r.predict("Say hi.", 3, None)
    assert set(again.accuracy) == {"tiny-a", "tiny-b"} and set(again.output_tokens) == {"tiny-b"}


def test_bandit_rejects_unknown_arms() -> None:
    bandit = QualityBandit(MODELS, 3)
    with pytest.raises(UnknownModelError, match="tiny-z"):
        bandit.update("tiny-z", np.ones(3), 0.1)


def test_router_feedback_changes_the_next_decision() -> None:
    from langchain_energyrouter.router import EnergyAwareRouter
    from langchain_energyrouter.testing import tiny_chat_models

    store = MemoryStateStore()
    router = EnergyAwareRouter(
        models=tiny_chat_models(),
        profile=tiny_profile(),
        weights={"accuracy": 0.95, "energy": 0.05},
        normalization="relative",
        prompt_routing=PromptRouting(MODELS, None, store, prior_accuracy=PRIOR, encoder=HashingEncoder(256)),
        state_store=store,
        learn=False,  # feedback moves the decision, not the energy measured on a busy machine
    )
    question = "Say hello to Anna."
    assert router.explain(question).model == "tiny-b"
    assert router.explain(question).candidates["tiny-a"].sources["accuracy"] == "prompt"
    for _ in range(16):
        msg = router.invoke(question, model="tiny-a")
        router.feedback(msg.response_metadata["routing"]["run_id"], 1.0)
    assert router.explain("Say hello to Ben.").model == "tiny-a"
    assert len(store.events(FEEDBACK_LOG)) == 16


def test_a_repeated_conversation_is_predicted_its_measured_length() -> None:
    from langchain_energyrouter.prompt.repeats import Repeat, RepeatLengths

    routing = PromptRouting(MODELS, None, None, prior_accuracy=PRIOR, encoder=HashingEncoder(256))
    chat = [SystemMessage("Answer in one word."), HumanMessage("Say hello to Anna.")]
    first = routing.predict("Say hello to Anna.", 6, None, conversation_key(chat))
    routing.remember("r1", MODELS[0], first)
    assert routing.observe_length("r1", 17, capped=False)
    again = routing.predict("Say hello to Anna.", 6, None, conversation_key(chat))
    assert again.output_tokens[MODELS[0]].quantile_tokens(0.0) == pytest.approx(17.0)  # measured before: used
    assert again.predicted_output_tokens[MODELS[0]] != again.output_tokens[MODELS[0]]  # the prediction, kept apart
    other = routing.predict("Write a poem about the sea.", 7, None, conversation_key([HumanMessage("Write a poem.")]))
    assert other.output_tokens[MODELS[0]].quantile_tokens(0.0) != pytest.approx(17.0)  # predicted, not looked up
    # The whole conversation is the key: the same last question after another system prompt, with history,
    # with another task type or cap is another conversation (its answer's length is not known).
    for different in (
        conversation_key([SystemMessage("Write an essay."), HumanMessage("Say hello to Anna.")]),
        conversation_key([HumanMessage("Hi"), AIMessage("Hello!"), *chat]),
        conversation_key(chat, task_type="chat"),
        conversation_key(chat, output_cap=256),
    ):
        assert routing.predict("Say hello to Anna.", 6, None, different).output_tokens == again.predicted_output_tokens
    # A length cut by the cap is a lower bound: a longer lower bound replaces it, a shorter one does not.
    lengths = RepeatLengths(capacity=2)
    lengths.put("m", "c1", 8, capped=True)
    lengths.put("m", "c1", 4, capped=True)
    assert lengths.get("m", "c1") == Repeat(8, True, 2)
    lengths.put("m", "c1", 12, capped=False)
    assert lengths.get("m", "c1") == Repeat(12, False, 3)
    lengths.put("m", "c2", 1, capped=False)
    lengths.put("m", "c3", 1, capped=False)
    assert lengths.get("m", "c1") is None and len(lengths) == 2  # bounded: the oldest went first


def test_a_batch_of_lengths_is_one_store_write_per_model_with_the_same_result(tmp_path: Path) -> None:
    prompts = [f"Say hello to {name}." for name in ("Anna", "Ben", "Cleo", "Dan", "Eve")]
    lengths = [12.0, 30.0, 7.0, 64.0, 21.0]
    one_by_one = routing(MemoryStateStore())
    store = SQLiteStateStore(tmp_path / "lengths.sqlite")
    batched = routing(store)
    for i, prompt in enumerate(prompts):
        for r in (one_by_one, batched):
            r.remember(f"run{i}", MODELS[i % 2], r.predict(prompt, 6, None))
    for i, tokens in enumerate(lengths):
        assert one_by_one.observe_length(f"run{i}", tokens)
    items = [(f"run{i}", tokens, False) for i, tokens in enumerate(lengths)]
    assert batched.observe_lengths([*items, ("never-remembered", 5.0, False)]) == 5
    for model in MODELS:  # one compare-and-swap per model for the whole batch
        document = store.get(QUALITY_KIND, model)
        assert document is not None and document.version == 1
    new = "Write a poem about the sea."
    for model in MODELS:
        assert batched.predict(new, 7, None).output_tokens[model] == pytest.approx(
            one_by_one.predict(new, 7, None).output_tokens[model]
        )
    store.close()


def test_replayed_router_feedback_moves_no_other_prompt() -> None:
    """The issue's figure: 400 scores of 0 for one run dragged another prompt's estimate of its model down."""
    from langchain_energyrouter.router import EnergyAwareRouter
    from langchain_energyrouter.testing import tiny_chat_models

    store = MemoryStateStore()
    router = EnergyAwareRouter(
        models=tiny_chat_models(max_new_tokens=2),
        profile=tiny_profile(),
        weights={"accuracy": 0.95, "energy": 0.05},
        prompt_routing=PromptRouting(MODELS, None, store, prior_accuracy=PRIOR, encoder=HashingEncoder(256)),
        state_store=store,
        learn=False,
    )
    run_id = router.invoke("Say hello to Anna.", model="tiny-b").response_metadata["routing"]["run_id"]
    assert router.feedback(run_id, 0.0) is True
    once = router.explain("What is 12 plus 30?").candidates["tiny-b"].accuracy
    learned = sum(router.feedback(run_id, 0.0) for _ in range(400))
    after = router.explain("What is 12 plus 30?").candidates["tiny-b"].accuracy
    assert (learned, after) == (0, pytest.approx(once, abs=1e-12)), (learned, once, after)
    assert router.explain("What is 12 plus 30?").model == "tiny-b"  # 400 replays flipped it to tiny-a
    assert router.feedback_outcome(run_id, 1.0) == "already_scored"
    assert len(store.events(FEEDBACK_LOG)) == 1


async def test_a_streamed_answer_has_its_run_id_and_takes_feedback() -> None:
    # LangChain calls _stream/_astream without the run manager; the router still learns the run's id.
    from langchain_energyrouter.router import EnergyAwareRouter
    from langchain_energyrouter.testing import tiny_chat_models

    store = MemoryStateStore()
    router = EnergyAwareRouter(
        models=tiny_chat_models(max_new_tokens=4),
        profile=tiny_profile(),
        prompt_routing=PromptRouting(MODELS, None, store, prior_accuracy=PRIOR, encoder=HashingEncoder(256)),
        state_store=store,
    )
    chunks = list(router.stream("Say hello to Anna."))
    run_id = chunks[-1].response_metadata["routing"]["run_id"]
    assert run_id is not None and chunks[0].id == f"lc_run--{run_id}"  # the same id as LangChain's run
    assert router.feedback(run_id, 1.0) is True
    async_chunks = [c async for c in router.astream("Say hello to Ben.")]
    async_run_id = async_chunks[-1].response_metadata["routing"]["run_id"]
    assert async_run_id not in (None, run_id) and router.feedback(async_run_id, 0.0) is True
    assert [e.payload["run_id"] for e in store.events(FEEDBACK_LOG)] == [run_id, async_run_id]


def test_per_prompt_routing_keeps_the_size_of_differences_by_default() -> None:
    # Min-max would make tiny-b's 2-point edge on this prompt a full unit of accuracy, worth more than
    # any energy saving at accuracy 0.6; the default with per-prompt routing (relative) keeps it small.
    from langchain_energyrouter.router import EnergyAwareRouter
    from langchain_energyrouter.testing import tiny_chat_models

    def router(**options: object) -> EnergyAwareRouter:
        return EnergyAwareRouter(
            models=tiny_chat_models(),
            profile=tiny_profile(),
            weights={"accuracy": 0.6, "energy": 0.3, "time": 0.1},
            learn=False,
            **options,  # type: ignore[arg-type]
        )

    close = {"tiny-a": 0.50, "tiny-b": 0.52}
    per_prompt = PromptRouting(MODELS, None, None, prior_accuracy=close, encoder=HashingEncoder(256))
    default = router(prompt_routing=per_prompt).explain("Say hello.")
    assert default.normalization == "relative" and default.model == "tiny-a"
    assert default.candidates["tiny-a"].sources["accuracy"] == "prompt"
    named = router(prompt_routing=per_prompt, normalization="minmax").explain("Say hello.")
    assert named.normalization == "minmax" and named.model == "tiny-b"
    assert router().explain("Say hello.").normalization == "minmax"  # the profile's figures only: the original's


def test_the_routing_metadata_keeps_the_length_predicted_before_repeat_memory() -> None:
    from langchain_energyrouter.router import EnergyAwareRouter
    from langchain_energyrouter.testing import tiny_chat_models

    router = EnergyAwareRouter(
        models=tiny_chat_models(),
        profile=tiny_profile(),
        prompt_routing=routing(MemoryStateStore()),
        max_tokens=200,
        learn_in_background=False,
    )
    first = router.invoke("Say hello to Anna.", model="tiny-a").response_metadata["routing"]
    assert first["predicted_output_tokens_before_repeats"] == pytest.approx(first["predicted_output_tokens"])
    again = router.invoke("Say hello to Anna.", model="tiny-a").response_metadata["routing"]
    # The repeat is predicted its measured length; the field keeps what the prompt alone predicted.
    assert abs(again["predicted_output_tokens"] - first["generated_tokens"]) < abs(
        again["predicted_output_tokens_before_repeats"] - first["generated_tokens"]
    )
    assert again["predicted_output_tokens_before_repeats"] != pytest.approx(again["predicted_output_tokens"])
    assert router.invoke("Hi", model="tiny-a").response_metadata["routing"]["predicted_output_tokens_before_repeats"]
    router.close()


def test_a_few_answers_to_other_prompts_barely_move_a_prompts_length() -> None:
    from langchain_energyrouter.prompt.predictor import PromptPredictor

    predictor = PromptPredictor.load("calibration/predictors/packaged-models.json")
    routing = PromptRouting(predictor.models, predictor)
    question = "What is the capital of France?"
    before = routing.predict(question, 8, None).output_tokens["smollm2-135m"].mean_tokens(32)
    for i, (prompt, tokens) in enumerate((("Name a colour.", 18), ("Describe a cat in two sentences.", 20))):
        estimate = routing.predict(prompt, 8, None)
        routing.remember(f"r{i}", "smollm2-135m", estimate)
        routing.observe_length(f"r{i}", tokens)
    after = routing.predict(question, 8, None).output_tokens["smollm2-135m"].mean_tokens(32)
    assert after < 1.15 * before, (before, after)  # at lambda 0.5: 22.0 -> 32.0, the cap
