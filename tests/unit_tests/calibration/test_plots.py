"""Plots produce non-empty PNGs."""

from __future__ import annotations

from pathlib import Path

from langchain_energyrouter.cli import main

from .conftest import PROFILES


def test_plot_command_writes_pngs(tmp_path: Path, small_raw_csv: Path) -> None:
    out = tmp_path / "plots"
    profile = tmp_path / "p.json"
    assert (
        main(
            [
                "fit",
                "--raw",
                f"m={small_raw_csv}",
                "--accuracy",
                "m=0.6",
                "--energy-method",
                "nvml_counter",
                "--out",
                str(profile),
            ]
        )
        == 0
    )
    # a second model so the router has a choice
    assert (
        main(
            ["fit", "--raw", f"n={small_raw_csv}", "--accuracy", "n=0.7", "--out", str(profile), "--estimators", "ols"]
        )
        == 0
    )
    assert main(["plot", "--profile", str(profile), "--out", str(out), "--raw", f"m={small_raw_csv}"]) == 0
    for name in ("tradeoff", "sensitivity", "dominance", "fit_diagnostics"):
        data = (out / f"{name}.png").read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 5000


def test_plot_reference_profile(tmp_path: Path) -> None:
    assert main(["plot", "--profile", str(PROFILES / "original-3-models.json"), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "dominance.png").stat().st_size > 5000
