"""What a decision-log line costs on the request path: microseconds to serialise and append, and bytes per line.

The line is written where the answer is final (on the server's event loop for an async call), with no thread
and no buffer, so that a killed server loses at most the line in flight; this prints what that costs per call,
for a decision over the reference profile's two models (``--fsync``: with a disk sync per line).

Run: ``.venv/bin/python benchmarks/bench_decision_log.py [--lines 5000] [--fsync]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from langchain_energyrouter.decide.scheduler import Scheduler
from langchain_energyrouter.energy.base import EnergyReading
from langchain_energyrouter.profile import EnergyProfile
from langchain_energyrouter.router.decision_log import DecisionLog


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=5000)
    parser.add_argument("--fsync", action="store_true", help="sync each line to disk")
    args = parser.parse_args(argv)
    decision = Scheduler(EnergyProfile.reference("cpu-reference")).decide(40)
    reading = EnergyReading(
        energy_j=3.2, energy_j_by_device={"cpu": 3.2}, runtime_s=0.5, method="estimate", is_estimate=True
    )
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "decisions.jsonl"
        with DecisionLog(path, fsync=args.fsync) as log:
            times = []
            for _ in range(args.lines):
                start = time.perf_counter()
                log.answered(decision, decision.model, reading, {"output_tokens": 12}, 13, run_id="r" * 36)
                times.append(time.perf_counter() - start)
        size = path.stat().st_size
    times.sort()
    print(
        f"{args.lines} lines{' (fsync)' if args.fsync else ''}: p50 {1e6 * statistics.median(times):.1f} us, "
        f"p99 {1e6 * times[int(0.99 * (len(times) - 1))]:.1f} us per line; {size / args.lines:.0f} bytes per line "
        f"({64 * 2**20 * args.lines // size:,} calls per 64 MiB file)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
