"""`energyrouter demo` routes real prompts across the packaged models and prints its table."""

from __future__ import annotations

import io

import pytest

from langchain_energyrouter.cli import main as energyrouter
from langchain_energyrouter.cli.demo import DEMO_PROMPTS, build_parser, run
from langchain_energyrouter.models import installed_embedded_models

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        set(installed_embedded_models()) != {"smollm2-135m", "gemma3-270m"},
        reason="the embedded models' packages are not installed (make setup installs them)",
    ),
]


def test_demo_routes_and_reports_totals() -> None:
    out = io.StringIO()
    args = build_parser().parse_args(["--prompts", "2", "--presets", "accuracy-first", "energy-first"])
    records = run(args, out=out)
    text = out.getvalue()
    assert len(records) == 4
    assert {r.prompt for r in records} == {p for _, p in DEMO_PROMPTS[:2]}
    assert all(r.answer.strip() or r.model == "gemma3-270m" for r in records)  # a base model may stop at once
    assert all(r.method == "estimate" and r.energy_j is not None and r.energy_j > 0 for r in records)
    assert "energy method of the profile: estimate (estimates on this hardware)" in text
    assert "always gemma3-270m" in text and "always smollm2-135m" in text
    assert "oracle (cheapest right answer)" in text and "score" in text
    assert "accuracy-first (" in text and "energy-first (" in text
    assert "per-prompt predictor:" in text and "packaged-models.json" in text
    assert "runtime prediction error over the routed calls (2., prompts each model answered in 1.)" in text
    assert "points are the length" in text
    errors = [line for line in text.splitlines() if line.startswith("runtime prediction error over")]
    assert len(errors) == 3 and all("; bias " in line for line in errors)  # every error figure with its bias
    assert "priced at the predicted median length instead of the mean" in text
    assert "warmed up in" in text and "(not measured)" in text  # no cold first call in the baselines
    assert "meas J marked ~: estimated" in text  # the ~ is explained
    assert text.count("answers to prompts not in the demo teach the router this machine's costs") == 2
    why = [line for line in text.splitlines() if line.strip().startswith("why: ")]
    assert len(why) == len(records)  # one reason per routed choice: each candidate's accuracy, joules, cost
    assert all("smollm2-135m acc " in line and "gemma3-270m acc " in line and " cost " in line for line in why)
    assert "without the repeat memory" in text and "measured again in 2." in text
    assert all(isinstance(r.correct, bool) and r.output_tokens > 0 for r in records)


def test_demo_rejects_unknown_preset(capsys: pytest.CaptureFixture[str]) -> None:
    assert energyrouter(["demo", "--presets", "fastest"]) == 1
    assert "Unknown preset(s) ['fastest']" in capsys.readouterr().err
