"""Every file under calibration/profiles/ loads and is what its README says."""

from __future__ import annotations

from pathlib import Path

import pytest

from langchain_energyrouter.profile import EnergyProfile

from .conftest import PROFILES, REPO

PROFILE_FILES = sorted(PROFILES.glob("*.json"))


def test_there_are_profiles() -> None:
    assert {p.name for p in PROFILE_FILES} >= {"original-3-models.json"}


@pytest.mark.parametrize("path", PROFILE_FILES, ids=lambda p: p.name)
def test_profile_loads(path: Path) -> None:
    profile = EnergyProfile.load(path)
    for mp in profile.models.values():
        assert mp.runtime.fit is not None and mp.runtime.fit.mape_holdout is not None
        assert mp.energy.fit is not None


def test_original_profile_contents() -> None:
    profile = EnergyProfile.load(PROFILES / "original-3-models.json")
    assert profile.energy_method == "nvml_poll"
    assert {n: m.accuracy for n, m in profile.models.items()} == {
        "phi-3-mini": 0.685,
        "mistral-7b": 0.723,
        "falcon-7b": 0.705,
    }
    assert {n: m.context_window for n, m in profile.models.items()} == {
        "phi-3-mini": 4096,
        "mistral-7b": 32768,
        "falcon-7b": 2048,
    }
    for mp in profile.models.values():
        assert "Plain OLS" in mp.runtime.fit.note  # type: ignore[union-attr]


def test_packaged_natural_prompts_match_the_suite_file() -> None:
    from langchain_energyrouter.calibration.design import default_natural_suite

    assert default_natural_suite().read_text() == (REPO / "calibration" / "suites" / "natural-chat.jsonl").read_text()
