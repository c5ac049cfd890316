"""Every snippet in README.md runs as written.

Python blocks run in order as one script (later blocks use the router the first
builds), against the packaged models; ``bash`` blocks run in a scratch directory
that sees the repository's ``calibration/``; ``json`` blocks must be valid
profiles. ``text``/``console`` blocks (make targets, GPU-only commands) are not run.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from langchain_energyrouter import EnergyProfile
from langchain_energyrouter.models import installed_embedded_models

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        set(installed_embedded_models()) != {"smollm2-135m", "gemma3-270m"},
        reason="the embedded models' packages are not installed (make setup installs them)",
    ),
]


def blocks(language: str) -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return [body for lang, body in FENCE.findall(text) if lang == language]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def test_readme_has_the_snippets_it_promises() -> None:
    assert len(blocks("python")) >= 6
    assert blocks("bash") and blocks("json")
    assert "make demo" in (ROOT / "README.md").read_text()


def test_python_snippets_run(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("agent_example", ROOT / "examples" / "agent_tools.py")
    assert spec is not None and spec.loader is not None
    agent_example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(agent_example)
    script = tmp_path / "readme_snippets.py"
    script.write_text("\n\n".join(blocks("python")), encoding="utf-8")
    with agent_example.serve_fake_openai() as url:  # stands in for the TGI server the snippet names
        result = subprocess.run(
            [sys.executable, str(script)],
            cwd=ROOT,
            env={**_env(), "TGI_URL": url},
            capture_output=True,
            text=True,
            timeout=900,
        )
    assert result.returncode == 0, result.stderr[-4000:]
    out = result.stdout
    lines = out.splitlines()
    # The first example routes by the router's own choice (nothing forced) and answers right.
    assert "Paris" in lines[0], lines[0]
    # The callback example: 3 calls one at a time have their own joules; 2 at once are kept apart.
    assert "{'estimate': 3}" in lines and "{'estimate': 2} {'estimate': 2}" in lines and "{}" in lines
    assert "estimate" in out  # the energy method is printed, labelled
    assert "42" in out  # the agent multiplied 6 by 7 with its tool


def test_bash_snippets_run(tmp_path: Path) -> None:
    (tmp_path / "calibration").symlink_to(ROOT / "calibration")
    for body in blocks("bash"):
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", body],
            cwd=tmp_path,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert result.returncode == 0, f"{body}\n{result.stderr[-4000:]}"
    EnergyProfile.load(tmp_path / "my-profile.json")
    assert sorted(p.suffix for p in (tmp_path / "plots").iterdir()) and all(
        p.stat().st_size > 0 for p in (tmp_path / "plots").iterdir()
    )


def test_json_snippets_are_valid_profiles() -> None:
    for body in blocks("json"):
        profile = EnergyProfile.from_json(body, origin="README.md")
        assert profile.models
