"""Decision time with prompt features: 16 candidates, a 200-token prompt (issue 10's target: at most 1 ms median
on 2 CPU cores for features + prediction + scheduling), next to the decision without features.

For reference: GreenServ reports 6.7-7.8 ms per query, vLLM Semantic Router about 22 ms on a GPU.

Per encoder (``hashing``: no model; ``minilm-static``: distilled all-MiniLM-L6-v2, built into the
cache on first use, minutes), it prints the median of:

* the decision without features (``Scheduler.decide`` on the profile alone);
* encoding the prompt; the 16 predictions from the feature vector;
* features + prediction + scheduling (``PromptPredictor.predict`` then ``decide``);
* the same through :class:`~langchain_energyrouter.prompt.bandit.PromptRouting` (predictor + bandit residual);
* for ``minilm-static`` also a cold word cache (every word of the prompt new to the encoder).

Run: .venv/bin/python benchmarks/bench_prompt_routing.py [--encoders hashing minilm-static]
"""

from __future__ import annotations

import argparse
import random
import sys

from _timing import median_us

from langchain_energyrouter import CostModel, DeviceInfo, EnergyProfile, ModelProfile, Scheduler
from langchain_energyrouter.calibration.outcomes import OutcomeRow
from langchain_energyrouter.prompt.encoders import StaticEmbeddingEncoder, load_encoder
from langchain_energyrouter.prompt.predictor import PromptPredictor
from langchain_energyrouter.prompt.routing import PromptRouting

N_MODELS = 16
WORDS = (
    "please explain how the energy use of a language model grows with the number of tokens it reads and writes "
    "and compare two small models on a question about arithmetic such as 4821 plus 977 or unit conversions from "
    "miles to kilometers while keeping the answer short and precise for a reader who knows little physics"
).split()


def profile(seed: int = 0) -> EnergyProfile:
    rng = random.Random(seed)
    models = {}
    for i in range(N_MODELS):
        s = rng.uniform(0.5, 4.0)
        models[f"m{i:02d}"] = ModelProfile(
            runtime=CostModel(intercept=0.1 * s, input_tokens=1e-4 * s, output_tokens=0.02 * s, interaction=1e-6 * s),
            energy=CostModel(intercept=5 * s, input_tokens=0.01 * s, output_tokens=3 * s, interaction=1e-4 * s),
            accuracy=rng.uniform(0.5, 0.9),
            context_window=8192,
        )
    return EnergyProfile.new(models, device=DeviceInfo(name="synthetic"), energy_method="estimate")


def outcome_rows(n_prompts: int, seed: int = 0) -> list[OutcomeRow]:
    rng = random.Random(seed)
    rows = []
    for i in range(n_prompts):
        prompt = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60)))
        for m in range(N_MODELS):
            score = float(rng.random() < 0.3 + 0.04 * m)
            tokens = len(prompt.split())
            rows.append(OutcomeRow(f"p{i}", prompt, f"m{m:02d}", score, tokens, rng.randint(5, 50)))
    return rows


def prompt_of_200_tokens(encoder_tokens: int = 200) -> str:
    words = [WORDS[i % len(WORDS)] for i in range(encoder_tokens)]
    return " ".join(words)


def bench_encoder(
    name: str, prof: EnergyProfile, scheduler: Scheduler, rows: list[OutcomeRow], base: float, repeats: int
) -> None:
    text, tin = prompt_of_200_tokens(), 200
    try:
        encoder = load_encoder(name)
    except ImportError as err:
        print(f"{name}: skipped ({err})")
        return
    predictor = PromptPredictor.train(rows, encoder=encoder, l2=1.0)
    x = predictor.features(text, tin, None)
    routing = PromptRouting(
        list(prof.models), predictor, prior_accuracy={m: prof.model(m).accuracy for m in prof.models}
    )

    def with_features() -> object:
        acc, tout = predictor.predict(text, tin, None)
        return scheduler.decide(tin, 64, prompt_accuracy=acc, prompt_output_tokens=tout)

    def with_bandit() -> object:
        est = routing.predict(text, tin, None)
        return scheduler.decide(tin, 64, prompt_accuracy=est.accuracy, prompt_output_tokens=est.output_tokens)

    enc_us = median_us(lambda: encoder.encode(text), repeats)
    dim = predictor.space.encoder.dim

    def predictions() -> object:  # from the feature vector: the cues, the length features, 16 distributions
        xl = predictor.length_features.vector(x[:dim], text, tin)
        return predictor.lengths.predict(xl, None)

    pred_us = median_us(predictions, repeats)
    full_us = median_us(with_features, repeats)
    bandit_us = median_us(with_bandit, repeats)
    print(f"{encoder.name} (feature dim {predictor.space.dim}):")
    print(f"  encode the prompt                             {enc_us:8.1f} us")
    print(f"  cues + {N_MODELS} length distributions              {pred_us:8.1f} us")
    print(f"  features + prediction + scheduling            {full_us:8.1f} us  ({full_us / base:.1f}x without)")
    print(f"  ... through PromptRouting (+ bandit)          {bandit_us:8.1f} us  ({bandit_us / base:.1f}x without)")
    if isinstance(encoder, StaticEmbeddingEncoder):
        static = encoder

        def cold() -> object:
            static._words.clear()
            return static.encode(text)

        print(f"  encode with a cold word cache                 {median_us(cold, 200, warmup=5):8.1f} us")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoders", nargs="+", default=["hashing", "minilm-static"])
    parser.add_argument("--repeats", type=int, default=2000)
    args = parser.parse_args(argv)

    prof = profile()
    scheduler = Scheduler(prof, {"accuracy": 0.6, "energy": 0.3, "time": 0.1}, normalization="relative")
    tin = 200
    base = median_us(lambda: scheduler.decide(tin, 64), args.repeats)
    print(f"{N_MODELS} candidates, a {tin}-token prompt; medians over {args.repeats} calls")
    print(f"  decision without features                     {base:8.1f} us")
    rows = outcome_rows(300)
    for name in args.encoders:
        bench_encoder(name, prof, scheduler, rows, base, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
