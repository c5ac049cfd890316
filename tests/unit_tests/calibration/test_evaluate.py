from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from langchain_energyrouter.calibration.curves import curve_metrics
from langchain_energyrouter.calibration.evaluate import (
    ROUTER_ACCURACY_WEIGHTS,
    TaskMeanPredictor,
    evaluate,
    split_prompts,
)
from langchain_energyrouter.calibration.outcomes import OutcomeMatrix, OutcomeRow, read_matrix, write_matrix
from langchain_energyrouter.calibration.synthetic import synthetic_rows
from langchain_energyrouter.cli import main
from langchain_energyrouter.errors import CalibrationError

# -- a matrix with known answers --------------------------------------------------------------
# 100 prompts. "weak" (1 J per prompt) is right on p000-p039, "strong" (10 J) on p000-p079;
# nobody gets p080-p099. Output lengths are constant per model.
N = 100


def _known_rows() -> list[OutcomeRow]:
    rows = []
    for i in range(N):
        task = "easy" if i < 40 else "medium" if i < 80 else "hard"
        for model, right, joules, out in (("weak", i < 40, 1.0, 3), ("strong", i < 80, 10.0, 5)):
            rows.append(
                OutcomeRow(
                    f"p{i:03d}", f"question {i} ({task})", model, float(right), 8, out,
                    runtime_s=joules / 10, energy_j=joules, energy_method="estimate", task_type=task,
                )
            )  # fmt: skip
    return rows


def _known() -> OutcomeMatrix:
    return OutcomeMatrix(tuple(_known_rows()), source="known")


class PerfectPredictor:
    """Stand-in predictor that knows every prompt's outcome (a perfect router)."""

    def __init__(self, rows: Sequence[OutcomeRow]) -> None:
        self.scores: dict[str, dict[str, float]] = {}
        self.lengths: dict[str, dict[str, float]] = {}
        for row in rows:
            self.scores.setdefault(row.prompt, {})[row.model] = row.score
            self.lengths.setdefault(row.prompt, {})[row.model] = float(row.output_tokens)

    def predict(
        self, prompt: str, input_tokens: int | None, task_type: str | None
    ) -> tuple[dict[str, float], dict[str, float]]:
        return self.scores[prompt], self.lengths[prompt]


def perfect(_train_rows: Sequence[OutcomeRow]) -> PerfectPredictor:
    """A predictor factory that ignores the training part and reads every outcome (test prompts too)."""
    return PerfectPredictor(_known_rows())


def _test_ids(seed: int = 0) -> list[str]:
    _train, test = split_prompts([f"p{i:03d}" for i in range(N)], 0.5, seed)
    return test


# -- curve metrics ------------------------------------------------------------------------------
def test_random_mixing_has_apgr_one_half_and_cpt_equal_to_the_target() -> None:
    weak, strong = (0.0, 0.4, 10.0), (1.0, 0.8, 100.0)
    points = [(p, 0.4 + 0.4 * p, 10 + 90 * p) for p in (0.1, 0.3, 0.5, 0.9)]
    m = curve_metrics(points, weak, strong)
    assert m.apgr == pytest.approx(0.5)
    assert m.cpt50 == pytest.approx(0.5) and m.cpt80 == pytest.approx(0.8)
    assert m.score_at_half_energy == pytest.approx(0.4 + 0.4 * 40 / 90)


def test_one_point_curve_by_hand() -> None:
    # Frontier (0, 0.4) -> (0.25, 0.8), flat after: area 0.25 * 0.6 + 0.75 * 0.8 = 0.75.
    m = curve_metrics([(0.25, 0.8, 30.0)], (0.0, 0.4, 10.0), (1.0, 0.8, 100.0))
    assert m.apgr == pytest.approx((0.75 - 0.4) / 0.4)
    assert m.cpt50 == pytest.approx(0.125) and m.cpt80 == pytest.approx(0.2)
    assert m.score_at_half_energy == pytest.approx(0.8) and m.score_at_half_energy_ratio == pytest.approx(1.0)


def test_dominated_points_do_not_lower_the_curve_and_unreached_targets_are_none() -> None:
    weak, strong = (0.0, 0.5, 10.0), (1.0, 0.9, 100.0)
    below = curve_metrics([(0.5, 0.45, 50.0)], weak, strong)
    assert below.apgr == pytest.approx(0.5)  # the straight line between the anchors
    no_gap = curve_metrics([(0.5, 0.6, 50.0)], (0.0, 0.7, 10.0), (1.0, 0.7, 100.0))
    assert no_gap.apgr is None and no_gap.cpt50 is None
    expensive = curve_metrics([], (0.0, 0.4, 80.0), (1.0, 0.8, 100.0))
    assert expensive.score_at_half_energy is None  # even the cheapest model costs more than half


# -- the replay -------------------------------------------------------------------------------------
def test_oracle_single_models_and_random_on_known_answers() -> None:
    report = evaluate(_known(), seed=0, predictor_factory=perfect, predictor_name="perfect")
    test = _test_ids(0)
    n = len(test)
    assert (report.n_train, report.n_test) == (50, 50)
    assert (report.weak, report.strong) == ("weak", "strong")
    weak_right = sum(int(p[1:]) < 40 for p in test)
    strong_right = sum(int(p[1:]) < 80 for p in test)
    pol = report.policies
    assert pol["single:weak"].score == pytest.approx(weak_right / n) and pol["single:weak"].energy_j == n * 1.0
    assert pol["single:strong"].score == pytest.approx(strong_right / n) and pol["single:strong"].energy_j == n * 10
    # The oracle sends only the prompts that weak misses and strong gets to strong.
    share = (strong_right - weak_right) / n
    assert pol["oracle"].strong_share == pytest.approx(share)
    assert pol["oracle"].score == pytest.approx(strong_right / n)
    assert pol["oracle"].energy_j == pytest.approx(n - (strong_right - weak_right) + 10 * (strong_right - weak_right))
    assert report.metrics["oracle"].apgr == pytest.approx(1 - share / 2)
    assert report.metrics["oracle"].cpt50 == pytest.approx(share / 2)
    assert report.metrics["random"].apgr == pytest.approx(0.5)
    assert pol["random:0.5"].score == pytest.approx((weak_right + strong_right) / (2 * n))
    assert report.energy_source == {"strong": "matrix", "weak": "matrix"}


def test_a_perfect_predictor_routes_like_the_oracle() -> None:
    report = evaluate(_known(), seed=0, predictor_factory=perfect, predictor_name="perfect")
    router, oracle = report.metrics["router"], report.metrics["oracle"]
    assert router.apgr == pytest.approx(oracle.apgr)
    assert router.cpt80 == pytest.approx(oracle.cpt80)
    best = max((p for p in report.policies.values() if p.family == "router"), key=lambda p: (p.score, -p.energy_j))
    assert best.score == report.policies["oracle"].score and best.energy_j == report.policies["oracle"].energy_j
    # Energy-only routing is always-weak; the sweep covers both ends.
    assert report.policies["router:0"].calls == {"weak": 1.0}
    assert len([p for p in report.policies.values() if p.family == "router"]) == len(ROUTER_ACCURACY_WEIGHTS)


def test_per_task_means_recover_the_task_structure() -> None:
    # Tasks separate the known matrix exactly (easy: both right, medium: strong only, hard: none).
    report = evaluate(_known(), seed=0)
    assert report.predictor == "task-mean"
    assert report.metrics["router"].apgr == pytest.approx(report.metrics["oracle"].apgr)


def test_task_baseline_is_replayed_beside_a_learned_predictor() -> None:
    report = evaluate(_known(), seed=1, predictor_factory=perfect)
    assert "router_task" in report.metrics and any(p.startswith("router_task:") for p in report.policies)
    alone = evaluate(_known(), seed=1, predictor_factory=perfect, task_baseline=False)
    assert "router_task" not in alone.metrics


def test_bandit_replays_every_weight_and_learns_from_each_prompt() -> None:
    from langchain_energyrouter.prompt.bandit import BanditOptions

    report = evaluate(_known(), bandit_options=BanditOptions())
    bandits = [p for p in report.policies.values() if p.family == "bandit"]
    assert len(bandits) >= 9 and report.metrics["bandit"].apgr is not None
    # Accuracy-only: the prior (mean training scores) picks strong at first; the learned residuals may move
    # prompts to weak, but never below always-weak's score.
    accuracy_only = report.policies["bandit:1"]
    assert accuracy_only.score >= report.policies["single:weak"].score
    assert report.policies["bandit:0.0099"].calls.get("weak", 0.0) > 0.5  # energy-heavy: mostly the cheap model


def test_weak_is_the_cheapest_other_model_when_the_best_is_also_the_cheapest() -> None:
    rows = [
        OutcomeRow(r.prompt_id, r.prompt, r.model, r.score, r.input_tokens, r.output_tokens,
                   energy_j=1.0 if r.model == "strong" else 2.0, task_type=r.task_type)
        for r in _known_rows()
    ]  # fmt: skip
    report = evaluate(OutcomeMatrix(tuple(rows)))
    assert (report.weak, report.strong) == ("weak", "strong")
    assert any("both the most accurate and the cheapest" in note for note in report.notes)
    assert report.metrics["random"].apgr == pytest.approx(0.5)


def test_prompts_missing_a_model_are_counted_and_left_out(tmp_path: Path) -> None:
    rows = [r for r in _known_rows() if not (r.prompt_id in {"p001", "p050", "p090"} and r.model == "strong")]
    report = evaluate(OutcomeMatrix(tuple(rows), source="gappy"))
    assert report.incomplete_prompts == 3
    assert report.n_train + report.n_test == N - 3
    assert "3 of 100 prompts" in report.missing_report
    replayed = {p for p in report.policies["single:weak"].calls}
    assert replayed == {"weak"}


def test_missing_energy_needs_a_profile(tmp_path: Path) -> None:
    from langchain_energyrouter.testing import tiny_profile

    rows = [OutcomeRow(f"p{i}", f"q{i}", m, float(i % 2), 10, 4) for i in range(20) for m in ("tiny-a", "tiny-b")]
    matrix = OutcomeMatrix(tuple(rows), source="no-energy")
    with pytest.raises(CalibrationError, match=r"lacks energy_j .* no --profile was given"):
        evaluate(matrix)
    profile = tiny_profile()
    report = evaluate(matrix, profile=profile)
    assert report.energy_source == {"tiny-a": "profile", "tiny-b": "profile"}
    expected = profile.models["tiny-b"].predict(10, 4).energy_j * report.n_test
    assert report.policies["single:tiny-b"].energy_j == pytest.approx(expected)
    assert report.predicted_energy_source == "profile"


def test_split_is_seeded_and_validated() -> None:
    ids = [f"p{i}" for i in range(10)]
    assert split_prompts(ids, 0.5, 3) == split_prompts(list(reversed(ids)), 0.5, 3)
    assert split_prompts(ids, 0.5, 3) != split_prompts(ids, 0.5, 4)
    train, test = split_prompts(ids, 0.3, 0)
    assert (len(train), len(test)) == (3, 7) and not set(train) & set(test)
    with pytest.raises(CalibrationError, match="strictly between 0 and 1"):
        split_prompts(ids, 1.0, 0)


def test_one_model_is_not_enough() -> None:
    rows = tuple(OutcomeRow(f"p{i}", "q", "only", 1.0, 1, 1, energy_j=1.0) for i in range(4))
    with pytest.raises(CalibrationError, match="routing needs two models"):
        evaluate(OutcomeMatrix(rows))


def test_task_mean_predictor_falls_back_to_overall_means() -> None:
    predictor = TaskMeanPredictor.train(_known_rows())
    scores, lengths = predictor.predict("x", 8, "medium")
    assert scores == {"weak": 0.0, "strong": 1.0} and lengths == {"weak": 3.0, "strong": 5.0}
    scores, _ = predictor.predict("x", 8, "never seen")
    assert scores == {"weak": 0.4, "strong": 0.8}


def test_synthetic_matrix_has_the_requested_shape() -> None:
    rows = synthetic_rows(300, [("a", 0.3, 1.0), ("b", 0.6, 4.0), ("c", 0.8, 9.0)], seed=2, missing_share=0.1)
    matrix = OutcomeMatrix(tuple(rows))
    assert matrix.models == ("a", "b", "c") and len(matrix.prompt_ids) == 300
    assert 10 < len(matrix.incomplete) < 60
    mean = {m: sum(r.score for r in rows if r.model == m) / sum(r.model == m for r in rows) for m in "abc"}
    assert mean["a"] < mean["b"] < mean["c"]


# -- the command -------------------------------------------------------------------------------------
def test_cli_json_shape_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "m.jsonl"
    rows = [r for r in _known_rows() if not (r.prompt_id == "p007" and r.model == "weak")]
    write_matrix(path, rows)
    plot = tmp_path / "curve.png"
    code = main(
        ["evaluate", "--matrix", str(path), "--json", "--predictor", "task", "--no-bandit", "--plot", str(plot)]
    )
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["router"]) >= {"apgr", "cpt50", "cpt80", "score_at_half_energy"}
    assert all(isinstance(data["router"][k], float) for k in ("apgr", "cpt50", "cpt80", "score_at_half_energy"))
    for name in ("single:weak", "single:strong", "oracle", "random:0.5", "router:1"):
        assert set(data["policies"][name]) >= {"score", "energy_j"}
    assert data["incomplete_prompts"] == 1
    assert data["split"]["train_prompts"] + data["split"]["test_prompts"] == N - 1
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_text_report_and_bad_matrix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "m.jsonl"
    write_matrix(path, _known_rows())
    assert main(["evaluate", "--matrix", str(path), "--predictor", "task", "--no-bandit"]) == 0
    out = capsys.readouterr().out
    assert "APGR" in out and "oracle" in out and "weak (cheapest) = weak" in out
    bad = tmp_path / "bad.jsonl"
    bad.write_text(path.read_text().replace('"score": 1.0', '"score": 7', 1))
    assert main(["evaluate", "--matrix", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "line 1" in err and "outside [0, 1]" in err and len(err.strip().splitlines()) == 1


def test_accuracy_command_writes_an_outcome_matrix(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from langchain_energyrouter.testing import tiny_profile

    profile = tmp_path / "p.json"
    tiny_profile().save(profile)
    suite = tmp_path / "suite.jsonl"
    items = [
        {"id": "q1", "prompt": "Say yes.", "answer": "yes", "match": "exact", "task_type": "instruction"},
        {"id": "q2", "prompt": "What is 1 + 1?", "answer": ["2", "two"], "task_type": "arithmetic"},
        {"id": "q3", "prompt": "An unlabelled prompt."},
    ]
    suite.write_text("".join(json.dumps(i) + "\n" for i in items))
    out = tmp_path / "outcomes.jsonl"
    code = main(
        [
            "accuracy", "--profile", str(profile), "--suite", str(suite), "--max-new-tokens", "4",
            "--device", "cpu", "--outcomes", str(out), f"tiny-a={tiny_model_dir}", f"tiny-b={tiny_model_dir}",
        ]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    matrix = read_matrix(out)
    assert matrix.models == ("tiny-a", "tiny-b") and matrix.prompt_ids == ("q1", "q2")
    for row in matrix.rows:
        assert row.score in (0.0, 1.0) and 1 <= row.output_tokens <= 4 and row.input_tokens > 0
        assert row.runtime_s is not None and row.runtime_s > 0
        assert row.energy_method in ("estimate", "rapl") and row.energy_j is not None
    assert matrix.by_prompt("q2")["tiny-a"].task_type == "arithmetic"
