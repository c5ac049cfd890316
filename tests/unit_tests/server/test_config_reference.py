"""`router.yaml` says everything the README advises; docs/router-yaml.md is generated from the schema and agrees
with examples/router.yaml."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytest.importorskip("yaml")

import yaml

from langchain_energyrouter.server import ConfigError, build_router, load_config
from langchain_energyrouter.server.config_reference import keys, reference_text
from langchain_energyrouter.testing import tiny_profile

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "router.yaml"
REFERENCE = ROOT / "docs" / "router-yaml.md"


def _paths(data: dict[str, object], prefix: str = "") -> set[str]:
    out = set()
    for key, value in data.items():
        if key == "candidates" and isinstance(value, list):
            out.add(key)
            out |= {f"candidates[].{k}" for candidate in value for k in candidate}
        elif key == "limits" and isinstance(value, dict):
            out.add(key)
            out |= {f"limits.{k}" for k in value}
        else:
            out.add(prefix + key)
    return out


def test_the_reference_is_generated_from_the_schema() -> None:
    assert REFERENCE.read_text(encoding="utf-8") == reference_text(), (
        "run `python -m langchain_energyrouter.server.config_reference --write docs/router-yaml.md`"
    )


def test_the_example_and_the_reference_agree() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    used = _paths(yaml.safe_load(text))
    # The commented-out remote candidate is documentation too: its keys must exist.
    commented = {f"candidates[].{k}" for k in re.findall(r"^\s*#\s+-?\s*(\w+):", text, re.MULTILINE)}
    assert commented >= {"candidates[].base_url", "candidates[].engine_metrics", "candidates[].model_id"}
    assert used | commented <= keys(), sorted((used | commented) - keys())
    load_config(EXAMPLE)  # and it validates
    reference = REFERENCE.read_text(encoding="utf-8")
    assert all(f"`{key}`" in reference for key in used | commented)


def test_every_key_the_readme_advises_is_accepted() -> None:
    advised = {
        "candidates[].engine_metrics",
        "candidates[].device",
        "candidates[].timeout_s",
        "candidates[].max_in_flight",
        "candidates[].model_id",
        "candidates[].api_key_env",
        "limits.max_tokens",
        "limits.max_in_flight_per_candidate",
        "limits.graceful_shutdown_s",
        "state_store",
        "prompt_routing",
        "feedback_secret_env",
    }
    assert advised <= keys()


def test_the_feedback_secret_is_read_from_the_environment_and_must_be_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny_profile().save(tmp_path / "profile.json")
    config = {"profile": "profile.json", "candidates": [{"name": "tiny-a"}], "feedback_secret_env": "ER_TEST_SECRET"}
    (tmp_path / "router.yaml").write_text(json.dumps(config))
    loaded, _ = load_config(tmp_path / "router.yaml")
    monkeypatch.delenv("ER_TEST_SECRET", raising=False)
    with pytest.raises(ConfigError, match="feedback_secret_env names 'ER_TEST_SECRET', which is unset or shorter"):
        loaded.app_settings()
    monkeypatch.setenv("ER_TEST_SECRET", "x" * 32)
    assert loaded.app_settings().feedback_secret == "x" * 32
    (tmp_path / "router.yaml").write_text(json.dumps({**config, "feedback_secret": "short"}))
    with pytest.raises(ConfigError, match="feedback_secret: String should have at least 32 characters"):
        load_config(tmp_path / "router.yaml")


def test_engine_metrics_reaches_the_router(tmp_path: Path) -> None:
    pytest.importorskip("langchain_openai")
    tiny_profile().save(tmp_path / "profile.json")
    url = "http://127.0.0.1:9/metrics"
    config = {
        "profile": "profile.json",
        "candidates": [
            {"name": "tiny-a", "base_url": "http://127.0.0.1:9/v1", "engine_metrics": url, "timeout_s": 5},
            {"name": "tiny-b", "base_url": "http://127.0.0.1:9/v1"},
        ],
    }
    (tmp_path / "router.yaml").write_text(json.dumps(config))
    loaded, base = load_config(tmp_path / "router.yaml")
    router = build_router(loaded, base)
    try:
        assert router.engine_metrics == {"tiny-a": url}
    finally:
        router.close()
    del config["candidates"][0]["base_url"]  # type: ignore[index]
    config["candidates"][0]["model"] = "smollm2-135m"  # type: ignore[index]
    (tmp_path / "router.yaml").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="engine_metrics without base_url"):
        load_config(tmp_path / "router.yaml")
