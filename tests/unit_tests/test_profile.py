"""The coefficient file: round trip, validation errors that name file and field, clamping."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from langchain_energyrouter import CostModel, EnergyProfile, ModelProfile, ProfileError
from langchain_energyrouter.profile import SCHEMA_VERSION
from tests.conftest import make_model, make_profile


@pytest.fixture
def profile_file(tmp_path: Path) -> Path:
    profile = make_profile({"a": make_model(), "b": make_model(accuracy=0.9)})
    return profile.save(tmp_path / "profile.json")


def _edit(path: Path, change) -> Path:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return path


def test_round_trip(profile_file: Path) -> None:
    loaded = EnergyProfile.load(profile_file)
    assert loaded.schema_version == SCHEMA_VERSION
    assert sorted(loaded.models) == ["a", "b"]
    assert loaded.models["b"].accuracy == 0.9
    assert EnergyProfile.from_json(loaded.to_json()).model_dump() == loaded.model_dump()
    assert loaded.origin == str(profile_file)


def test_predict_uses_all_four_terms() -> None:
    model = make_model(runtime=(1.0, 0.1, 0.2, 0.01), energy=(10.0, 1.0, 2.0, 0.1))
    runtime_s, energy_j, flags = model.predict(input_tokens=20, output_tokens=60)
    assert runtime_s == pytest.approx(1.0 + 0.1 * 20 + 0.2 * 60 + 0.01 * 20 * 60)
    assert energy_j == pytest.approx(10.0 + 20 + 120 + 0.1 * 1200)
    assert flags == ()


def test_negative_extrapolation_is_clamped_and_flagged() -> None:
    model = make_model(runtime=(-5.0, 0.001, 0.001, 0.0), energy=(-100.0, 0.0, 0.1, 0.0))
    prediction = model.predict(input_tokens=1, output_tokens=1)
    assert prediction.runtime_s == 0.0
    assert prediction.energy_j == 0.0
    assert prediction.flags == ("runtime_clamped", "energy_clamped")


def test_output_length_heuristic_and_caps() -> None:
    model = make_model()  # no fitted length model: the original's 1.028*tin + 44.12
    assert model.output_length.source == "heuristic"
    assert model.predict_output_tokens(100) == pytest.approx(1.028 * 100 + 44.12)  # the mean, uncapped
    length = model.predict_output_length(100)
    assert length.mean_tokens() == pytest.approx(1.028 * 100 + 44.12)
    # Capped at 32, far below the mean of 147: nearly every answer is cut, the mean under the cap is just under 32.
    capped = model.predict_output_tokens(100, max_output_tokens=32)
    assert capped == pytest.approx(length.mean_tokens(32)) and 31.5 < capped < 32
    fitted = make_model(output=(-50.0, 0.1))
    assert fitted.predict_output_tokens(10) == pytest.approx(1.0)  # never below one token


def test_task_accuracy_falls_back_to_static() -> None:
    model = make_model(accuracy=0.6, accuracy_by_task={"math": 0.2})
    assert model.accuracy_for("math") == 0.2
    assert model.accuracy_for("poetry") == 0.6
    assert model.accuracy_for(None) == 0.6


def test_truncated_json_names_file(profile_file: Path) -> None:
    text = profile_file.read_text()
    profile_file.write_text(text[: len(text) // 2])
    with pytest.raises(ProfileError, match=r"profile\.json is not valid JSON.*truncated"):
        EnergyProfile.load(profile_file)


def test_missing_file() -> None:
    with pytest.raises(ProfileError, match="does not exist"):
        EnergyProfile.load("/nonexistent/profile.json")


def test_nan_coefficient_names_field(profile_file: Path) -> None:
    text = profile_file.read_text().replace('"intercept": 0.1', '"intercept": NaN', 1)
    profile_file.write_text(text)
    with pytest.raises(ProfileError, match=r"profile\.json.*models\.a\.runtime\.intercept.*finite.*nan"):
        EnergyProfile.load(profile_file)


def test_future_schema_version(profile_file: Path) -> None:
    _edit(profile_file, lambda d: d.update(schema_version=SCHEMA_VERSION + 1))
    with pytest.raises(ProfileError, match=r"schema_version.*newer.*upgrade"):
        EnergyProfile.load(profile_file)


def test_unknown_field(profile_file: Path) -> None:
    _edit(profile_file, lambda d: d["models"]["a"].update(acuracy=0.5))
    with pytest.raises(ProfileError, match=r"models\.a\.acuracy.*Extra inputs are not permitted"):
        EnergyProfile.load(profile_file)


def test_missing_field(profile_file: Path) -> None:
    _edit(profile_file, lambda d: d["models"]["b"].pop("energy"))
    with pytest.raises(ProfileError, match=r"models\.b\.energy.*Field required"):
        EnergyProfile.load(profile_file)


def test_no_models(profile_file: Path) -> None:
    _edit(profile_file, lambda d: d.update(models={}))
    with pytest.raises(ProfileError, match=r"models.*at least 1"):
        EnergyProfile.load(profile_file)


def test_missing_model_lookup_lists_profiled_models(profile_file: Path) -> None:
    profile = EnergyProfile.load(profile_file)
    with pytest.raises(ProfileError, match=r"no entry for model 'c'.*\['a', 'b'\].*calibrate"):
        profile.model("c")


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        (lambda d: d["models"]["a"].update(accuracy=1.5), r"models\.a\.accuracy"),
        (lambda d: d["models"]["a"].update(context_window=0), r"models\.a\.context_window"),
        (lambda d: d["models"]["a"].update(accuracy_by_task={"x": -0.1}), r"accuracy for task 'x'"),
        (lambda d: d["models"]["a"]["runtime"].update(uses_interaction=False, interaction=0.5), "uses_interaction"),
        (lambda d: d.update(energy_method="guess"), r"energy_method"),
        (lambda d: d.update(created_at="yesterday"), r"created_at"),
        (lambda d: d["models"]["a"]["runtime"].update(intercept="fast"), r"models\.a\.runtime\.intercept"),
    ],
)
def test_inconsistent_values_are_rejected(profile_file: Path, change, pattern: str) -> None:
    _edit(profile_file, change)
    with pytest.raises(ProfileError, match=pattern):
        EnergyProfile.load(profile_file)


def test_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    with pytest.raises(ProfileError, match="must be a JSON object"):
        EnergyProfile.load(path)


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    profile = make_profile({"a": make_model()})
    path = profile.save(tmp_path / "sub" / "p.json")
    assert [p.name for p in path.parent.iterdir()] == ["p.json"]


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_saved_profile_has_the_mode_the_umask_gives(tmp_path: Path, umask: int, mode: int) -> None:
    # A profile is shared (a team's calibration, a server's config): not a temporary file's 0600.
    old = os.umask(umask)
    try:
        path = make_profile({"a": make_model()}).save(tmp_path / "p.json")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode


def test_cost_model_without_interaction_must_say_so() -> None:
    with pytest.raises(ValueError, match="uses_interaction"):
        CostModel(intercept=0, input_tokens=1, output_tokens=1, interaction=0.2, uses_interaction=False)


def test_with_models_adds_entries() -> None:
    profile = make_profile({"a": make_model()})
    bigger = profile.with_models({"b": make_model(accuracy=0.1)})
    assert sorted(bigger.models) == ["a", "b"]
    assert sorted(profile.models) == ["a"]
    assert isinstance(bigger.models["b"], ModelProfile)


def test_every_committed_profile_loads() -> None:
    root = Path(__file__).resolve().parents[2] / "calibration"
    files = sorted((root / "profiles").glob("*.json"))
    assert files, "calibration/profiles/ holds the reference profiles"
    for path in files:
        EnergyProfile.load(path)


def test_output_length_by_task_is_validated(profile_file: Path) -> None:
    _edit(profile_file, lambda d: d["models"]["a"]["output_length"].update(by_task={"factual": -3}))
    with pytest.raises(ProfileError, match=r"output_length\.by_task.*output length for task 'factual' is -3"):
        EnergyProfile.load(profile_file)
