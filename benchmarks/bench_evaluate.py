"""``energyrouter evaluate`` on outcome matrices it has never seen: time, training included (issue 10).

Two synthetic matrices (:func:`~langchain_energyrouter.calibration.synthetic.synthetic_rows`: prompts
with a task and a difficulty, models with a skill and a price per token, 1% of prompts lacking
one model's row):

* two models, 5000 prompts (a RouteLLM-style weak/strong pair);
* sixteen models, 3000 prompts (48 000 rows; skills 0.2-0.9, joules per token 0.5-20).

Each is written to a temporary JSONL file and run through the whole command
(``main(["evaluate", "--matrix", ..., "--json"])``: read and validate, split, train the
predictor, replay every policy, metrics), as a user would. The target is under 120 s per
matrix on 2 CPU cores. Reading the matrix alone is timed as the baseline the replay is
compared with.

Run: ``python benchmarks/bench_evaluate.py [--prompts-scale 1.0] [--predictor auto|task|prompt]``
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

from langchain_energyrouter.calibration.outcomes import read_matrix, write_matrix
from langchain_energyrouter.calibration.synthetic import synthetic_rows
from langchain_energyrouter.cli.main import main

TARGET_S = 120.0


def _models(n: int) -> list[tuple[str, float, float]]:
    if n == 2:
        return [("small", 0.4, 1.0), ("large", 0.7, 6.0)]
    return [(f"m{i:02d}", 0.2 + 0.7 * i / (n - 1), 0.5 * (40 ** (i / (n - 1)))) for i in range(n)]


def run(n_models: int, n_prompts: int, predictor: str, directory: Path) -> dict[str, float | str | None]:
    path = directory / f"synthetic-{n_models}x{n_prompts}.jsonl"
    write_matrix(path, synthetic_rows(n_prompts, _models(n_models), seed=n_models, missing_share=0.01))
    start = time.perf_counter()
    read_matrix(path)
    read_s = time.perf_counter() - start
    out = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out):
        code = main(["evaluate", "--matrix", str(path), "--json", "--predictor", predictor])
    total_s = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"evaluate failed on {path} (exit {code})")
    data = json.loads(out.getvalue())
    return {
        "matrix": f"{n_models} models x {n_prompts} prompts",
        "read_s": read_s,
        "total_s": total_s,
        "train_s": data["timings_s"].get("train_s"),
        "route_s": data["timings_s"].get("route_s"),
        "bandit_s": data["timings_s"].get("bandit_s"),
        "apgr": data["router"]["apgr"],
        "oracle_apgr": data["metrics"]["oracle"]["apgr"],
        "predictor": data["predictor"],
    }


def main_bench(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts-scale", type=float, default=1.0, help="scale the prompt counts (quick runs)")
    parser.add_argument("--predictor", default="auto", choices=["auto", "task", "prompt"])
    args = parser.parse_args(argv)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for n_models, n_prompts in ((2, 5000), (16, 3000)):
            r = run(n_models, max(int(n_prompts * args.prompts_scale), 20), args.predictor, Path(tmp))
            total = float(r["total_s"] or 0.0)
            ok &= total < TARGET_S
            parts = ", ".join(
                f"{k} {float(v):.2f} s" for k in ("train_s", "route_s", "bandit_s") if (v := r[k]) is not None
            )
            verdict = "ok" if total < TARGET_S else "MISSED"
            read_s = float(r["read_s"] or 1e-9)
            print(
                f"{r['matrix']}: evaluate {total:.1f} s (target < {TARGET_S:.0f} s: {verdict}); "
                f"{total / read_s:.1f}x reading the matrix ({read_s:.2f} s); {parts}; "
                f"predictor {r['predictor']}; router APGR {r['apgr']}, oracle APGR {r['oracle_apgr']}"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main_bench())
