"""The package's layout: no import cycle, imports only down the stages, light hot-path packages.

``tools/check_layout.py`` states the rules; these tests run it on the package and on copies with one
forbidden import added, so a rule that stopped biting would fail here too.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "langchain_energyrouter"


@pytest.fixture(scope="module")
def checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_layout", ROOT / "tools" / "check_layout.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclass-like NamedTuples resolve their module
    spec.loader.exec_module(module)
    return module


def test_the_package_keeps_its_layout(checker: ModuleType) -> None:
    assert checker.problems(ROOT) == []


def test_the_script_runs_on_its_own() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "check_layout.py")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
    assert "0 problem(s)" in done.stderr


def _copy_with(tmp_path: Path, module: str, line: str) -> Path:
    shutil.copytree(PACKAGE, tmp_path / "langchain_energyrouter", ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "langchain_energyrouter" / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(
    ("module", "line", "expected"),
    [
        ("decide/scoring.py", "from langchain_energyrouter.router import chat_model", "decide may not import router"),
        ("learn/loop.py", "import langchain_energyrouter.server.app", "learn may not import server"),
        ("calibration/evaluate.py", "from langchain_energyrouter.router.call import RoutedCall", "calibration may not"),
        ("energy/base.py", "from langchain_energyrouter.state import open_store", "energy may not import state"),
        ("decide/scheduler.py", "def f():\n    import numpy", "decide may not import numpy"),
        ("learn/costs.py", "from langchain_core.messages import AIMessage", "learn may not import langchain_core"),
        ("prompt/features.py", "import torch", "prompt may not import torch at import time"),
    ],
)
def test_a_forbidden_import_is_caught(
    checker: ModuleType, tmp_path: Path, module: str, line: str, expected: str
) -> None:
    found = checker.problems(_copy_with(tmp_path, module, line))
    assert any(expected in problem and module in problem for problem in found), found


def test_a_type_only_cycle_is_caught(checker: ModuleType, tmp_path: Path) -> None:
    line = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from langchain_energyrouter.router.call import RoutedCall"
    )
    found = checker.problems(_copy_with(tmp_path, "router/candidates.py", line))
    assert any(p.startswith("import cycle:") and "langchain_energyrouter.router.candidates" in p for p in found), found


def test_a_function_may_import_torch_in_prompt(checker: ModuleType, tmp_path: Path) -> None:
    found = checker.problems(_copy_with(tmp_path, "prompt/features.py", "def f():\n    import torch"))
    assert found == []
