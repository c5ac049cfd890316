"""Calibrate two models with the ``energyrouter`` CLI, then route between them.

The whole offline-then-online workflow in one script: profile each model on
this machine (a small designed grid of input lengths x forced output lengths),
fit the cost models, score accuracy, then build an ``EnergyAwareRouter`` over
the same models with the profile just written.

By default it uses two tiny offline models saved to a temporary directory (a
minute on a laptop CPU); ``--models smollm2-135m gemma3-270m`` calibrates the
packaged models instead (a few minutes).

Run it::

    python examples/calibrate_then_route.py
    python examples/calibrate_then_route.py --models smollm2-135m gemma3-270m
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from langchain_energyrouter import EnergyAwareRouter, EnergyProfile, load_chat_model
from langchain_energyrouter.cli.main import main as energyrouter

SUITE = Path(__file__).resolve().parents[1] / "calibration" / "suites" / "qa-small.jsonl"


def tiny_models(directory: Path) -> list[str]:
    """Save a small and a larger tiny model as local HF directories; returns their paths."""
    from langchain_energyrouter.testing import save_tiny_model

    small = save_tiny_model(directory / "tiny-a", "tiny-a", hidden_size=32, num_hidden_layers=2)
    large = save_tiny_model(directory / "tiny-b", "tiny-b", hidden_size=128, num_hidden_layers=4)
    return [str(small), str(large)]


def calibrate(models: list[str], profile: Path, *, quick: bool) -> EnergyProfile:
    """Run `energyrouter calibrate` and `energyrouter accuracy`; returns the profile."""
    grid = ["--input-lengths", "8,64", "--output-lengths", "4,16", "--repetitions", "2", "--warmup", "1"]
    natural = ["--natural-max-new-tokens", "16"]
    if energyrouter(["calibrate", *models, "--out", str(profile), *(grid if quick else []), *natural]) != 0:
        raise SystemExit("calibration failed (see the message above)")
    names = list(EnergyProfile.load(profile).models)
    if energyrouter(["accuracy", "--profile", str(profile), "--suite", str(SUITE), "--max-new-tokens", "8", *names]):
        raise SystemExit("accuracy scoring failed (see the message above)")
    return EnergyProfile.load(profile)


def route(profile: EnergyProfile, sources: dict[str, str], question: str) -> None:
    """Build the router from the fresh profile and ask under two presets."""
    router = EnergyAwareRouter(
        models={name: load_chat_model(source, max_new_tokens=16) for name, source in sources.items()},
        energy_profile=profile,
    )
    try:
        for preset, weights in (("accuracy-first", {"accuracy": 1.0}), ("energy-first", {"energy": 1.0})):
            message = router.invoke(question, weights=weights)
            routing, energy = message.response_metadata["routing"], message.response_metadata["energy"]
            print(
                f"{preset:>15}: {routing['model']:<14} predicted {routing['predicted_runtime_s']:.3f} s, "
                f"measured {energy['runtime_s']:.3f} s ({energy['method']}); answer {message.content!r}"
            )
    finally:
        router.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", help="models to calibrate (default: two tiny offline models)")
    parser.add_argument("--question", default="What is the capital of France?")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        models = args.models or tiny_models(work)
        profile = calibrate(models, work / "profile.json", quick=not args.models)
        # The profile names each model as calibrate resolved it (short name or directory name).
        sources = dict(zip(profile.models, models, strict=True))
        print(f"profiled {sorted(profile.models)} -> energy method {profile.energy_method}")
        route(profile, sources, args.question)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
