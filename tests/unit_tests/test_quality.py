"""Per-prompt predictors: known answers on synthetic data, censored lengths, shrinkage, files."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from langchain_energyrouter.decide.predictions import PROMPT
from langchain_energyrouter.decide.scheduler import Scheduler
from langchain_energyrouter.errors import ProfileError
from langchain_energyrouter.prompt.encoders import HashingEncoder
from langchain_energyrouter.prompt.predictor import PromptPredictor
from langchain_energyrouter.prompt.predictor_file import read_predictor_file
from langchain_energyrouter.testing import tiny_profile

NAMES = ["Anna", "Ben", "Chloe", "Dmitri", "Eve", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemal", "Lena"]


@dataclass(frozen=True)
class Row:
    """An outcome row with the attributes of ``outcomes.OutcomeRow`` that training reads."""

    prompt_id: str
    prompt: str
    model: str
    score: float
    input_tokens: int
    output_tokens: int
    task_type: str | None = None
    output_tokens_samples: tuple[int, ...] | None = None


def arithmetic(r: random.Random) -> str:
    return r.choice(["What is {a} plus {b}?", "Compute {a} + {b}.", "Add {a} and {b}."]).format(
        a=r.randint(100, 99999), b=r.randint(100, 99999)
    )


def greeting(r: random.Random) -> str:
    return r.choice(["Say hello to {n}.", "Greet {n} warmly.", "Write a one-line welcome for {n}."]).format(
        n=r.choice(NAMES)
    )


def two_families(n: int, seed: int) -> list[Row]:
    """tiny-b always gets arithmetic right and tiny-a never; both always get greetings right."""
    r = random.Random(seed)
    rows = []
    for i in range(n):
        is_sum = i % 2 == 0
        prompt = arithmetic(r) if is_sum else greeting(r)
        tokens = len(prompt.split()) + 2
        rows.append(Row(f"s{seed}-{i}", prompt, "tiny-a", 0.0 if is_sum else 1.0, tokens, 12))
        rows.append(Row(f"s{seed}-{i}", prompt, "tiny-b", 1.0, tokens, 20))
    return rows


@pytest.fixture(scope="module")
def predictor() -> PromptPredictor:
    return PromptPredictor.train(two_families(80, seed=1), encoder=HashingEncoder(256))


def test_a_family_one_model_always_gets_right_is_separated(predictor: PromptPredictor) -> None:
    r = random.Random(99)  # prompts never seen in training
    for _ in range(10):
        acc, _ = predictor.predict(arithmetic(r), 10, None)
        assert acc["tiny-b"] > 0.8 and acc["tiny-a"] < 0.2, acc
        acc, _ = predictor.predict(greeting(r), 8, None)
        assert acc["tiny-a"] > 0.8 and acc["tiny-b"] > 0.8, acc
    stats = predictor.spec.scores["tiny-a"]
    assert stats.cv_log_loss is not None and stats.cv_log_loss_mean_only is not None
    assert stats.cv_log_loss < 0.5 * stats.cv_log_loss_mean_only  # the prompt carries the signal
    assert stats.form == "prompt" and stats.cv_log_loss_task_only is not None


def test_the_scheduler_routes_each_family_to_its_model(predictor: PromptPredictor) -> None:
    scheduler = Scheduler(tiny_profile(), {"accuracy": 0.85, "energy": 0.15}, normalization="relative")
    static = {scheduler.decide(10, 16).model for _ in range(2)}
    assert len(static) == 1  # without the prompt every request goes to one model
    r = random.Random(7)
    for make, expected in ((arithmetic, "tiny-b"), (greeting, "tiny-a")):
        prompt = make(r)
        acc, tout = predictor.predict(prompt, 10, None)
        decision = scheduler.decide(10, 16, prompt_accuracy=acc, prompt_output_tokens=tout)
        assert decision.model == expected, (prompt, acc)
        assert decision.chosen.sources["accuracy"] == PROMPT


def test_lengths_at_the_budget_are_censored_not_taken_as_lengths() -> None:
    rng = np.random.default_rng(0)
    rows = []
    budget = 50
    true = np.exp(rng.normal(math.log(60), 0.5, size=300))  # median 60: most answers hit the budget
    for i, t in enumerate(true):
        rows.append(Row(f"p{i}", f"Tell me about item {i}.", "m", 1.0, 8, int(min(round(t), budget))))
    censored = PromptPredictor.train(rows, encoder=HashingEncoder(16), censored_at=budget, l2=1.0)
    naive = PromptPredictor.train(rows, encoder=HashingEncoder(16), censored_at=None, l2=1.0)
    auto = PromptPredictor.train(rows, encoder=HashingEncoder(16), l2=1.0)
    assert auto.spec.lengths["m"].censored_at == budget
    assert censored.spec.lengths["m"].n_censored > 150
    assert censored.spec.lengths["m"].max_output_tokens_seen == budget  # measured, not a draw beyond the budget
    _, tout_c = censored.predict("Tell me about item 7.", 8, None)
    _, tout_n = naive.predict("Tell me about item 7.", 8, None)
    assert tout_n["m"].mean_tokens() < budget  # taking the budget as the length underestimates
    assert 55 < tout_c["m"].mean_tokens() < 110, tout_c  # log-normal mean of the true lengths is about 68
    assert tout_c["m"].quantile_tokens(0.0) == pytest.approx(60, rel=0.25)  # and its median, 60


def test_multi_sample_rows_with_every_sample_at_the_budget_are_censored() -> None:
    rng = np.random.default_rng(1)
    budget, rows = 50, []
    for i in range(300):
        samples = tuple(int(min(round(t), budget)) for t in np.exp(rng.normal(math.log(60), 0.5, size=3)))
        rows.append(Row(f"p{i}", f"Tell me about item {i}.", "m", 1.0, 8, samples[0], None, samples))
    spec = PromptPredictor.train(rows, encoder=HashingEncoder(16), censored_at=budget, l2=1.0).spec.lengths["m"]
    every = sum(min(r.output_tokens_samples or ()) >= budget for r in rows)
    assert every > 50 and spec.n_censored == every  # was 0: rows of several samples were never censored


def test_few_rows_keep_the_profile_and_shrink_to_the_mean() -> None:
    rows = two_families(20, seed=3)
    rows += [Row("x1", "What is 2 plus 2?", "tiny-c", 1.0, 6, 5)]
    p = PromptPredictor.train(rows, encoder=HashingEncoder(64), min_rows=10, l2=1e4)
    assert "tiny-c" not in p.models  # one row: the scheduler keeps the profile's accuracy
    acc, _ = p.predict("What is 1 plus 1?", 6, None)
    assert acc["tiny-a"] == pytest.approx(0.5, abs=0.05)  # heavy penalty: the model's mean score
    with pytest.raises(ProfileError, match="rows per model"):
        PromptPredictor.train(rows, encoder=HashingEncoder(64), min_rows=1000)


def test_task_type_is_a_feature() -> None:
    r = random.Random(5)
    rows = []
    for i in range(120):
        prompt = greeting(r)  # same kind of text; only the caller's task type tells them apart
        task = "strict" if i % 2 else "loose"
        rows.append(Row(f"t{i}", prompt, "m", 1.0 if task == "loose" else 0.0, 6, 4, task))
    p = PromptPredictor.train(rows, encoder=HashingEncoder(64))
    assert p.spec.task_types == ["loose", "strict"]
    assert p.predict("Say hello to Bob.", 6, "loose")[0]["m"] > 0.7
    assert p.predict("Say hello to Bob.", 6, "strict")[0]["m"] < 0.3
    assert 0.3 < p.predict("Say hello to Bob.", 6, None)[0]["m"] < 0.7


def test_a_task_type_the_predictor_never_saw_is_guessed_from_the_text() -> None:
    r = random.Random(6)
    rows = []
    for i in range(160):
        short = i % 2 == 0
        prompt = arithmetic(r) if short else greeting(r)
        rows.append(Row(f"u{i}", prompt, "m", 1.0, 6, 4 if short else 60, "math" if short else "chat"))
    p = PromptPredictor.train(rows, encoder=HashingEncoder(64))
    question = arithmetic(random.Random(99))
    guessed = p.predict(question, 6, None)[1]["m"].mean_tokens()
    unseen = p.predict(question, 6, "a-label-from-another-vocabulary")[1]["m"].mean_tokens()
    assert guessed < 15 and unseen == pytest.approx(guessed)  # was the no-task block: between the two tasks


def test_bad_scores_are_rejected() -> None:
    with pytest.raises(ProfileError, match=r"score 1\.5"):
        PromptPredictor.train([Row("a", "x", "m", 1.5, 1, 1)] * 40, encoder=HashingEncoder(16))


def test_save_load_round_trip(predictor: PromptPredictor, tmp_path: Path) -> None:
    path = predictor.save(tmp_path / "predictor.json")
    again = PromptPredictor.load(path)  # builds its own hashing encoder from the recorded name
    assert again.spec == predictor.spec and again.fingerprint == predictor.fingerprint
    assert again.predict("Compute 12 + 99.", 6, None) == predictor.predict("Compute 12 + 99.", 6, None)


def test_invalid_files_name_the_file_and_field(predictor: PromptPredictor, tmp_path: Path) -> None:
    path = predictor.save(tmp_path / "p.json")
    data = json.loads(path.read_text())
    data["scores"]["tiny-a"]["mean_score"] = 1.5
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match=r"p\.json is invalid: scores\.tiny-a\.mean_score"):
        read_predictor_file(path)
    path.write_text('{"schema_version": 2, "encoder": ')
    with pytest.raises(ProfileError, match=r"not valid JSON \(line 1"):
        read_predictor_file(path)
    data["scores"]["tiny-a"]["mean_score"] = 0.5
    data["schema_version"] = 3
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match=r"schema_version 3; this version reads 2\. Upgrade"):
        read_predictor_file(path)
    data["schema_version"] = 1  # one length per model: refused with the fix
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match=r"schema_version 1.*retrain it with `energyrouter train`"):
        read_predictor_file(path)
    with pytest.raises(ProfileError, match="does not exist"):
        read_predictor_file(tmp_path / "missing.json")
    with pytest.raises(ProfileError, match="trained with encoder 'hashing-256'"):
        PromptPredictor(predictor.spec, HashingEncoder(128))


def test_train_command_writes_a_loadable_predictor(tmp_path: Path) -> None:
    from langchain_energyrouter.cli import main

    matrix = tmp_path / "m.jsonl"
    with matrix.open("w") as handle:
        for row in two_families(60, seed=2):
            handle.write(json.dumps({k: v for k, v in row.__dict__.items() if v is not None}) + "\n")
    out = tmp_path / "p.json"
    assert main(["train", "--matrix", str(matrix), "--out", str(out), "--encoder", "hashing", "--json"]) == 0
    assert PromptPredictor.load(out).models == ("tiny-a", "tiny-b")


def test_quality_import_does_not_pull_heavy_packages() -> None:
    code = (
        "import sys, langchain_energyrouter.prompt.predictor, langchain_energyrouter.prompt.bandit; "
        "bad = {'pandas', 'statsmodels', 'scipy', 'torch', 'transformers', 'tokenizers', 'pynvml'} & set(sys.modules); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_length_does_not_depend_on_which_tokenizer_counted_the_prompt(predictor: PromptPredictor) -> None:
    """Each model's tokenizer and chat template count a prompt differently (tens of tokens apart): the length
    model reads the text's own size, so the count the caller passes cannot shift the prediction."""
    _, few = predictor.predict("What is 123 plus 456?", 6, None)
    _, many = predictor.predict("What is 123 plus 456?", 90, None)
    assert few == many


def test_summed_expected_lengths_match_the_answers_cut_at_the_budget() -> None:
    """Short answers that sometimes run to the budget (most at 3 tokens, 30% cut at 40): no log-normal through the
    median and p90 has that mean, so the mean is calibrated on its own, under the budget."""
    rng = random.Random(4)
    rows = []
    for i in range(240):
        prompt = f"What is {rng.randint(10, 99)} plus {rng.randint(10, 99)}? (#{i})"
        tokens = 40 if rng.random() < 0.3 else rng.choice((2, 3, 3, 4))
        rows.append(Row(f"b{i}", prompt, "m", 1.0, 12, tokens, "arithmetic"))
    train, test = rows[:160], rows[160:]
    p = PromptPredictor.train(train, encoder=HashingEncoder(64), censored_at=40)
    predicted = sum(p.predict(r.prompt, r.input_tokens, r.task_type)[1]["m"].mean_tokens(40) for r in test)
    true = sum(r.output_tokens for r in test)
    assert predicted / true == pytest.approx(1.0, abs=0.2)


def test_features_that_carry_nothing_fall_back_to_the_per_task_baseline() -> None:
    """Lengths and scores drawn at random, whatever the prompt: cross-validation must keep per-task means."""
    rng = random.Random(9)
    rows = []
    for i in range(200):
        prompt = arithmetic(rng) if i % 2 else greeting(rng)
        task = "math" if i % 2 else "chat"
        for model in ("tiny-a", "tiny-b"):
            tokens = round(20 * rng.lognormvariate(0.0, 0.6))
            rows.append(Row(f"n{i}", prompt, model, float(rng.random() < 0.5), 8, tokens, task))
    p = PromptPredictor.train(rows, encoder=HashingEncoder(256))
    assert {m: p.spec.lengths[m].form for m in p.models} == {"tiny-a": "task", "tiny-b": "task"}
    assert {m: p.spec.scores[m].form for m in p.scored_models} == {"tiny-a": "task", "tiny-b": "task"}
    # and the fallback predicts like the task means: one length and one score per task, whatever the wording
    _, one = p.predict("What is 4 plus 5?", 8, "math")
    _, other = p.predict("Add 123 and 456.", 8, "math")
    assert one["tiny-a"].mu == pytest.approx(other["tiny-a"].mu)
