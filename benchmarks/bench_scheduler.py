"""Decision time of Scheduler.decide for 3, 16 and 64 candidates, against a pandas
implementation of the original scheduler in the same process (a ratio, since machines are noisy),
and the same decision with every input that makes it about this moment: load models and requests
in flight, learned (adapted) coefficients and output lengths, per-prompt accuracy and length
(issue 9's target: under 0.2 ms for 16 candidates).

Run: .venv/bin/python benchmarks/bench_scheduler.py
"""

from __future__ import annotations

import random

from _timing import median_us

from langchain_energyrouter import CostModel, DeviceInfo, EnergyProfile, ModelProfile, Scheduler, Weights
from langchain_energyrouter.learn.costs import CostLearner
from langchain_energyrouter.profile import LoadModel


def synthetic_profile(n_models: int, seed: int = 0, *, with_load: bool = False) -> EnergyProfile:
    rng = random.Random(seed)
    models = {}
    for i in range(n_models):
        scale = rng.uniform(0.5, 4.0)
        models[f"m{i:02d}"] = ModelProfile(
            runtime=CostModel(
                intercept=0.1 * scale, input_tokens=1e-4 * scale, output_tokens=0.02 * scale, interaction=1e-6 * scale
            ),
            energy=CostModel(
                intercept=5 * scale, input_tokens=0.01 * scale, output_tokens=3 * scale, interaction=1e-4 * scale
            ),
            accuracy=rng.uniform(0.5, 0.9),
            context_window=8192,
            load=LoadModel(runtime_per_request=0.02, energy_fixed_share=0.7, max_load=64) if with_load else None,
        )
    return EnergyProfile.new(models, device=DeviceInfo(name="synthetic"), energy_method="estimate")


def pandas_original(frame, input_tokens: int, weights: tuple[float, float, float]):
    """The original scheduler's shape: a DataFrame per request, vectorised predictions,
    min-max normalisation, weighted sum, idxmin."""
    df = frame.copy()
    tin = float(input_tokens)
    df["tout"] = 1.028 * tin + 44.12
    df["runtime"] = df.r0 + df.r1 * tin + df.r2 * df.tout + df.r3 * tin * df.tout
    df["energy"] = df.e0 + df.e1 * tin + df.e2 * df.tout + df.e3 * tin * df.tout
    df["acc_cost"] = 1.0 - df.accuracy
    for col in ("acc_cost", "energy", "runtime"):
        col_min, col_max = df[col].min(), df[col].max()
        df[col + "_n"] = (df[col] - col_min) / (col_max - col_min + 1e-12)
    w_acc, w_energy, w_time = weights
    df["score"] = w_acc * df.acc_cost_n + w_energy * df.energy_n + w_time * df.runtime_n
    return df["score"].idxmin()


def to_frame(profile: EnergyProfile):
    import pandas as pd

    rows = {}
    for name, m in profile.models.items():
        rows[name] = {
            "r0": m.runtime.intercept, "r1": m.runtime.input_tokens, "r2": m.runtime.output_tokens,
            "r3": m.runtime.interaction, "e0": m.energy.intercept, "e1": m.energy.input_tokens,
            "e2": m.energy.output_tokens, "e3": m.energy.interaction, "accuracy": m.accuracy,
        }  # fmt: skip
    return pd.DataFrame.from_dict(rows, orient="index")


def main() -> None:
    weights = Weights(accuracy=0.7, energy=0.2, time=0.1)
    w = (weights.accuracy, weights.energy, weights.time)
    print(f"{'candidates':>10} {'scheduler_us':>13} {'pandas_us':>10} {'pandas/ours':>12}  agree")
    for n in (3, 16, 64):
        profile = synthetic_profile(n)
        scheduler = Scheduler(profile, weights)
        frame = to_frame(profile)
        prompts = [random.Random(i).randint(4, 2000) for i in range(64)]
        agree = all(scheduler.decide(t).model == pandas_original(frame, t, w) for t in prompts)
        ours = median_us(lambda s=scheduler: s.decide(input_tokens=120, max_output_tokens=None), 2000)
        theirs = median_us(lambda f=frame: pandas_original(f, 120, w), 300)
        print(f"{n:>10} {ours:>13.1f} {theirs:>10.1f} {theirs / ours:>11.1f}x  {agree}")
    print()
    print("Decision with load, learned state and per-prompt predictions (same process):")
    print(f"{'candidates':>10} {'plain_us':>9} {'full_us':>8} {'full/plain':>11}  sources")
    for n in (3, 16, 64):
        profile = synthetic_profile(n, with_load=True)
        scheduler = Scheduler(profile, weights)
        learner = CostLearner(profile)
        rng = random.Random(n)
        for name in profile.models:  # every model adapted from a few measured calls
            for _ in range(5):
                tin, tout = rng.randint(10, 200), rng.randint(5, 100)
                cost = profile.models[name].predict(tin, tout)
                learner.observe(name, tin, tout, cost.runtime_s * 1.3, cost.energy_j * 1.3, "estimate")
            scheduler.set_learned(name, learner.snapshot(name))
        in_flight = {name: float(rng.randint(1, 8)) for name in profile.models}
        accuracy = {name: rng.uniform(0.2, 0.9) for name in profile.models}
        lengths = {name: float(rng.randint(10, 300)) for name in profile.models}
        plain = Scheduler(profile, weights)
        plain_us = median_us(lambda s=plain: s.decide(input_tokens=120, max_output_tokens=None), 2000)
        full_us = median_us(
            lambda s=scheduler, f=in_flight, a=accuracy, o=lengths: s.decide(
                120, None, in_flight=f, prompt_accuracy=a, prompt_output_tokens=o
            ),
            2000,
        )
        sources = dict(scheduler.decide(120, None, in_flight=in_flight).chosen.sources)
        print(f"{n:>10} {plain_us:>9.1f} {full_us:>8.1f} {full_us / plain_us:>10.2f}x  {sources}")


if __name__ == "__main__":
    main()
