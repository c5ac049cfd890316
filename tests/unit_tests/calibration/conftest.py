from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
TRACES = REPO / "calibration" / "traces" / "original"
PROFILES = REPO / "calibration" / "profiles"
SUITES = REPO / "calibration" / "suites"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny offline Llama saved as a local HF directory (what `calibrate DIR` loads)."""
    from langchain_energyrouter.testing import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-a")


@pytest.fixture
def small_raw_csv(tmp_path: Path) -> Path:
    import numpy as np

    rng = np.random.default_rng(0)
    lines = ["prompt_id,input_tokens,output_tokens,runtime_seconds,energy_joules"]
    for i in range(60):
        tin, tout = int(rng.integers(5, 60)), int(rng.integers(10, 100))
        runtime = (0.1 + 0.02 * tout + 0.0002 * tin * tout) * (1 + 0.03 * rng.standard_normal())
        lines.append(f"{i + 1},{tin},{tout},{runtime:.5f},{runtime * 150:.4f}")
    path = tmp_path / "small.csv"
    path.write_text("\n".join(lines) + "\n")
    return path
