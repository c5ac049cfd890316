"""How well a calibrated CPU profile predicts runtime on chat prompts it never saw.

For each prompt of an unseen suite the model generates as the router would
(greedy, unforced, capped), timed by the best energy meter here. Printed:

* runtime MAPE given the true input and output token counts (the cost model alone);
* output-length MAPE of the profile's length predictor;
* end-to-end runtime MAPE with the output length predicted too (what routing sees);
* the same for energy (estimates on a machine without a hardware meter).

Run (after `energyrouter calibrate`):
``python benchmarks/bench_calibration.py --profile calibration/profiles/cpu-reference.json smollm2-135m``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=["smollm2-135m"])
    parser.add_argument("--profile", default=str(ROOT / "calibration" / "profiles" / "cpu-reference.json"))
    parser.add_argument("--suite", default=str(ROOT / "calibration" / "suites" / "unseen-chat.jsonl"))
    parser.add_argument("--max-new-tokens", type=int, default=64, help="as in calibration (default 64)")
    parser.add_argument("--threads", type=int)
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from langchain_energyrouter.calibration.design import load_suite
    from langchain_energyrouter.calibration.runner import encode_prompt, generate
    from langchain_energyrouter.energy import default_meter
    from langchain_energyrouter.models import load_model_and_tokenizer
    from langchain_energyrouter.profile import EnergyProfile

    if args.threads:
        torch.set_num_threads(args.threads)
    profile = EnergyProfile.load(args.profile)
    suite = load_suite(args.suite)
    meter = default_meter()
    print(
        f"profile {args.profile} ({profile.device.name}, energy {profile.energy_method}); "
        f"{len(suite)} unseen prompts from {args.suite}; meter here: {meter.method}"
    )
    for name in args.models:
        mp = profile.model(name)
        t0 = time.perf_counter()
        model, tokenizer = load_model_and_tokenizer(mp.model_id or name)
        print(f"\n{name}: loaded in {time.perf_counter() - t0:.1f} s")
        generate(model, tokenizer, encode_prompt(tokenizer, "Hello!"), 8, forced=False)  # warm-up
        rows = []
        for item in suite:
            ids = encode_prompt(tokenizer, item.prompt)
            handle = meter.begin()
            _, tout = generate(model, tokenizer, ids, args.max_new_tokens, forced=False)
            reading = meter.end(handle)
            tin = len(ids)
            true_pred = mp.predict(tin, tout)
            tout_hat = mp.predict_output_tokens(tin, args.max_new_tokens)
            e2e_pred = mp.predict(tin, tout_hat)
            rows.append(
                (
                    item.id,
                    tin,
                    tout,
                    tout_hat,
                    reading.runtime_s,
                    true_pred.runtime_s,
                    e2e_pred.runtime_s,
                    reading.energy_j or float("nan"),
                    true_pred.energy_j,
                    e2e_pred.energy_j,
                )
            )
        print(
            f"{'prompt':<9} {'tin':>4} {'tout':>5} {'tout^':>6} {'runtime s':>10} {'pred(true)':>11} {'pred(e2e)':>10}"
        )
        for r in rows:
            print(f"{r[0]:<9} {r[1]:>4} {r[2]:>5} {r[3]:>6.1f} {r[4]:>10.3f} {r[5]:>11.3f} {r[6]:>10.3f}")
        a = np.array([r[1:] for r in rows], dtype=float)

        def mape(pred: np.ndarray, y: np.ndarray) -> float:
            return float(np.mean(np.abs(pred - y) / y))

        print(f"{name}: runtime MAPE with true token counts      {mape(a[:, 4], a[:, 3]):6.1%}")
        print(f"{name}: output-length MAPE (predicted vs true)    {mape(a[:, 2], a[:, 1]):6.1%}")
        print(f"{name}: end-to-end runtime MAPE (tout predicted)  {mape(a[:, 5], a[:, 3]):6.1%}")
        print(f"{name}: energy MAPE with true token counts        {mape(a[:, 7], a[:, 6]):6.1%} ({meter.method})")
        print(f"{name}: end-to-end energy MAPE                    {mape(a[:, 8], a[:, 6]):6.1%}")
        del model
    meter.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
