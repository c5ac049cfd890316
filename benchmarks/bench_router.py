"""The router's own overhead per call, with the model itself taken out.

Candidates are ``GenericFakeChatModel`` instances (no inference), so what is
left is the router: token counting for every candidate, the scheduler's
decision, the meter window and the metadata. Reported as the median of many
calls, in microseconds, next to calling the fake model directly, in the same
process, the two timed alternately so that a change in machine load hits both:

* ``invoke``: ``router.invoke`` vs ``fake.invoke``, with the null meter (pure
  routing) and with ``default_meter()`` (what a user gets here);
* ``stream``: draining ``router.stream`` vs ``fake.stream``;
* ``explain``: the decision alone over two tiny Hugging Face models, i.e.
  token counting with real tokenizers and chat templates (no model runs).

Run it::

    python benchmarks/bench_router.py [--calls 2000] [--candidates 2] [--json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from _profiles import profile_for
from _timing import median_us
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from langchain_energyrouter.energy import NullMeter, default_meter
from langchain_energyrouter.router import EnergyAwareRouter

MESSAGES = [SystemMessage("Answer briefly."), HumanMessage("What is the capital of France? " * 4)]


def fake_model() -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=itertools.cycle([AIMessage("Paris is the capital of France.")]))


def paired_median_us(direct: Callable[[], Any], routed: Callable[[], Any], calls: int) -> dict[str, float]:
    """Medians of ``direct`` and ``routed``, timed alternately so that load changes hit both alike."""
    for _ in range(min(50, calls)):
        direct()
        routed()
    a, b = [], []
    for _ in range(calls):
        start = time.perf_counter_ns()
        direct()
        middle = time.perf_counter_ns()
        routed()
        a.append(middle - start)
        b.append(time.perf_counter_ns() - middle)
    direct_us, router_us = statistics.median(a) / 1000.0, statistics.median(b) / 1000.0
    return {
        "direct_us": direct_us,
        "router_us": router_us,
        "overhead_us": router_us - direct_us,
        "ratio": router_us / direct_us,
    }


def run(calls: int, candidates: int) -> dict[str, Any]:
    names = [f"fake-{i}" for i in range(candidates)]
    profile = profile_for(names)
    direct = fake_model()
    null_router = EnergyAwareRouter(models={n: fake_model() for n in names}, profile=profile, meter=NullMeter())
    meter = default_meter()
    metered_router = EnergyAwareRouter(models={n: fake_model() for n in names}, profile=profile, meter=meter)

    figures: dict[str, Any] = {"calls": calls, "candidates": candidates, "meter": meter.method}
    for label, router in (("invoke_null_meter", null_router), ("invoke_default_meter", metered_router)):
        figures[label] = paired_median_us(lambda: direct.invoke(MESSAGES), lambda r=router: r.invoke(MESSAGES), calls)
    figures["stream_null_meter"] = paired_median_us(
        lambda: list(direct.stream(MESSAGES)), lambda: list(null_router.stream(MESSAGES)), calls
    )
    figures["explain_fake_us"] = median_us(lambda: null_router.explain(MESSAGES), calls)

    from langchain_energyrouter.testing import tiny_chat_models

    tiny = tiny_chat_models()
    tiny_router = EnergyAwareRouter(models=tiny, profile=profile_for(list(tiny)), meter=NullMeter())
    figures["explain_tiny_hf_us"] = median_us(lambda: tiny_router.explain(MESSAGES), calls)
    meter.close()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Median per-call overhead of EnergyAwareRouter over fake models.")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--candidates", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    figures = run(args.calls, args.candidates)
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"{args.candidates} fake candidates, median of {args.calls} calls, energy meter here: {figures['meter']}")
    for label in ("invoke_null_meter", "invoke_default_meter", "stream_null_meter"):
        f = figures[label]
        print(
            f"  {label:<22} direct {f['direct_us']:8.1f} us   router {f['router_us']:8.1f} us   "
            f"overhead {f['overhead_us']:8.1f} us   ratio {f['ratio']:.2f}x"
        )
    print(f"  explain (decision only), fake candidates:        {figures['explain_fake_us']:8.1f} us")
    print(f"  explain (decision only), 2 tiny HF tokenizers:    {figures['explain_tiny_hf_us']:8.1f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
