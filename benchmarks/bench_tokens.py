"""The router's whole pre-generation overhead for 8 candidates and a ~2,000-token prompt (issue 12 item 16).

Pre-generation overhead is everything the router does before the chosen
candidate starts: converting the input, counting the prompt's tokens for the
candidates, the scheduler's decision, preparing the call and opening the meter
window (``EnergyAwareRouter.plan`` + ``router.execution.start_attempt``). It is
timed next to a baseline in the same process: the counting the router did
before (every candidate's chat template rendered and its prompt encoded with
the tokenizer's Python ``encode``, no sharing, no memo) followed by the same
decision. Target: under 2 ms.

Scenarios, all over 8 tiny offline models (``langchain_energyrouter.testing``):

* ``cold_8_tokenizers``: every candidate has its own tokenizer and the
  conversation is new on every call (a nonce in the prompt): the worst case.
* ``cold_3_families``: 8 candidates in 3 tokenizer families (one tokenizer
  object per family, as with SmolLM2 135M/360M/1.7B), new conversation each call.
* ``warm``: the conversation was counted before (``explain`` then ``invoke``,
  a retry, a graph step re-run): the LRU answers.
* ``tools_bound``: tools bound, the 8 local pipelines excluded but one
  endpoint-style candidate: excluded candidates get characters / 4.

Run it::

    python benchmarks/bench_tokens.py [--calls 30] [--json]
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
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool

from langchain_energyrouter.energy import NullMeter
from langchain_energyrouter.router import EnergyAwareRouter
from langchain_energyrouter.router.execution import start_attempt
from langchain_energyrouter.router.tokens import find_tokenizer, messages_to_dicts
from langchain_energyrouter.testing import build_tiny_chat_model

SENTENCE = "Explain how an energy aware router picks a language model for a prompt. "
CANDIDATES = 8


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def build_models(families: int) -> dict[str, BaseChatModel]:
    """8 tiny chat models; ``families`` tokenizer objects shared round-robin (8 = none shared)."""
    models: dict[str, BaseChatModel] = {f"m{i}": build_tiny_chat_model(f"m{i}") for i in range(CANDIDATES)}
    shared = [find_tokenizer(models[f"m{i}"]) for i in range(families)]
    for i, model in enumerate(models.values()):
        tokenizer = shared[i % families]
        model.tokenizer = tokenizer  # type: ignore[attr-defined]
        model.llm.pipeline.tokenizer = tokenizer  # type: ignore[attr-defined]
    return models


def prompt(nonce: int, repeats: int) -> list[BaseMessage]:
    return [SystemMessage(f"Answer briefly. Request {nonce}."), HumanMessage(SENTENCE * repeats)]


def baseline_counts(models: dict[str, BaseChatModel], messages: list[BaseMessage]) -> dict[str, int]:
    """What the router did before: render and encode for every candidate, nothing shared."""
    counts = {}
    for name, model in models.items():
        tokenizer = find_tokenizer(model)
        dicts = messages_to_dicts(messages)
        text = tokenizer.apply_chat_template(dicts, tokenize=False, add_generation_prompt=True)
        counts[name] = len(tokenizer.encode(text, add_special_tokens=False))
    return counts


def pre_generation(router: EnergyAwareRouter, messages: list[BaseMessage], **kwargs: Any) -> None:
    plan = router.plan(messages, **kwargs)
    start_attempt(plan.order[0], plan)  # the candidate's call prepared, admitted, in flight, its meter window open
    plan.close()


def baseline_pre_generation(router: EnergyAwareRouter, messages: list[BaseMessage]) -> None:
    rt = router._parts()
    counts = baseline_counts(rt.candidates, router._convert_input(messages).to_messages())
    rt.scheduler.decide(counts, rt.configured_caps)


def paired_ms(baseline: Callable[[int], Any], current: Callable[[int], Any], calls: int) -> dict[str, float]:
    """Medians in ms of both, timed alternately; each call gets a fresh nonce (a new conversation)."""
    nonces = itertools.count(10_000)
    for _ in range(3):
        baseline(next(nonces))
        current(next(nonces))
    a, b = [], []
    for _ in range(calls):
        start = time.perf_counter()
        baseline(next(nonces))
        middle = time.perf_counter()
        current(next(nonces))
        a.append(middle - start)
        b.append(time.perf_counter() - middle)
    before, after = statistics.median(a) * 1e3, statistics.median(b) * 1e3
    return {"before_ms": before, "after_ms": after, "ratio": before / after}


def run(calls: int, repeats: int) -> dict[str, Any]:
    figures: dict[str, Any] = {"calls": calls, "candidates": CANDIDATES}
    names = [f"m{i}" for i in range(CANDIDATES)]
    for label, families in (("cold_8_tokenizers", CANDIDATES), ("cold_3_families", 3)):
        models = build_models(families)
        router = EnergyAwareRouter(
            models=models,
            profile=profile_for(names, accuracy_step=0.05, context_window=8192, energy_method="none"),
            meter=NullMeter(),
        )
        tokens = router.explain(prompt(0, repeats)).candidates["m0"].input_tokens
        figures["prompt_tokens"] = tokens
        tokenizer = find_tokenizer(models["m0"])
        rendered = tokenizer.apply_chat_template(
            messages_to_dicts(prompt(0, repeats)), tokenize=False, add_generation_prompt=True
        )
        figures["one_encode_ms"] = (
            median_us(lambda t=tokenizer, x=rendered: t.encode(x, add_special_tokens=False), calls) / 1e3
        )
        figures[label] = paired_ms(
            lambda n, r=router: baseline_pre_generation(r, prompt(n, repeats)),
            lambda n, r=router: pre_generation(r, prompt(n, repeats)),
            calls,
        )
        if families == 3:
            same = prompt(1, repeats)
            pre_generation(router, same)
            figures["warm"] = paired_ms(
                lambda _n, r=router, m=same: baseline_pre_generation(r, m),
                lambda _n, r=router, m=same: pre_generation(r, m),
                calls * 10,
            )
            endpoint = EnergyAwareRouter(
                models=models,
                profile=profile_for(names, accuracy_step=0.05, context_window=8192, energy_method="none"),
                meter=NullMeter(),
                tool_models=["m7"],  # as if m7 were an endpoint that calls tools; the others are excluded
            )
            bound_kwargs = {"tools": [convert_to_openai_tool(multiply)]}
            figures["tools_bound"] = paired_ms(
                lambda n, r=endpoint: baseline_pre_generation(r, prompt(n, repeats)),
                lambda n, r=endpoint, k=bound_kwargs: pre_generation(r, prompt(n, repeats), **k),
                calls,
            )
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Pre-generation overhead of the router, 8 candidates.")
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=44, help="sentence repeats in the prompt (44: ~2,000 tokens)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    figures = run(args.calls, args.repeats)
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(
        f"{CANDIDATES} candidates, prompt of {figures['prompt_tokens']} tokens, median of {args.calls} calls "
        "(warm: 10x); before = render + encode per candidate, then the decision"
    )
    print(f"  floor: one exact encode of this prompt by one tokenizer takes {figures['one_encode_ms']:.2f} ms")
    for label in ("cold_8_tokenizers", "cold_3_families", "warm", "tools_bound"):
        f = figures[label]
        print(
            f"  {label:<18} before {f['before_ms']:8.2f} ms   after {f['after_ms']:8.2f} ms   ratio {f['ratio']:6.1f}x"
            f"   {'under' if f['after_ms'] < 2.0 else 'OVER'} the 2 ms target"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
