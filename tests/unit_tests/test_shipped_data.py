"""An installed package finds its shipped data (profiles, predictors, suites, the example router.yaml) without
the repository: the wheel's layout, as pyproject.toml's force-include declares it, rebuilt in a scratch dir."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parents[2]


def test_an_installed_package_finds_the_example_config_suites_and_predictor(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    shutil.copytree(ROOT / "langchain_energyrouter", site / "langchain_energyrouter")
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]
    for source, target in build["force-include"].items():
        copy = shutil.copytree if (ROOT / source).is_dir() else shutil.copyfile
        (site / target).parent.mkdir(parents=True, exist_ok=True)
        copy(ROOT / source, site / target)
    code = """
from langchain_energyrouter.calibration.design import load_suite
from langchain_energyrouter.files import data_file
from langchain_energyrouter.server import load_config
from langchain_energyrouter.server.config import _predictor
config, base = load_config(data_file("router", "examples", ".yaml"))
print(base)
print(_predictor(base, config.prompt_routing))
print(len(load_suite("qa-small")), len(load_suite("routing-suite")))
"""
    elsewhere = tmp_path / "elsewhere"  # not the repository: nothing may come from its calibration/ or examples/
    elsewhere.mkdir()
    result = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(site)!r})\n{code}"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0] == str(site / "langchain_energyrouter" / "examples")
    assert lines[1] == str(site / "langchain_energyrouter" / "predictors" / "packaged-models.json")
    assert lines[2] == f"{_lines('qa-small')} {_lines('routing-suite')}"


def _lines(suite: str) -> int:
    text = (ROOT / "calibration" / "suites" / f"{suite}.jsonl").read_text()
    return sum(1 for line in text.splitlines() if line.strip())
