"""``energyrouter demo``: route real, graded prompts across the embedded default models.

Builds an :class:`~langchain_energyrouter.router.EnergyAwareRouter` over the two
packaged models (SmolLM2-135M-Instruct and Gemma-3-270M) with the committed CPU
reference profile and the committed per-prompt predictor (trained on the routing
suite's outcome matrix, without the demo's own prompts), learning from every call.

0. Each model answers one warm-up prompt, unmeasured: a cold first call (caches,
   allocation, lazy imports) would make the first baseline look costlier than it is.
   Then three answers per model to prompts not in the demo, routed and measured,
   teach the router this machine's costs (``--learn-first``): the profile was
   measured on another machine, and an operator calibrates before serving.
1. Every model answers every prompt (forced routes): the "always this model"
   baselines and the oracle need those answers, and the router learns this
   machine's costs from them as it goes.
2. Each weight preset routes every prompt. Every answer is graded against the
   suite's answer, and a line under each says why: every candidate's predicted
   accuracy on this prompt, joules and cost (the weighted sum; lowest wins).

At the end: per preset the score and energy next to every single model and the
oracle (the cheapest model that answers right), and how far the runtime
predictions were off, with the part of the error that is the answer's length,
and for the routed calls the error without the repeat memory.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from langchain_energyrouter.calibration.design import SuiteItem
from langchain_energyrouter.files import data_file

DEMO_ITEMS: tuple[SuiteItem, ...] = (
    SuiteItem(
        "factual-fact-001", "What is the capital of France? Answer with one word.", ("Paris",), "contains", "factual"
    ),
    SuiteItem(
        "arithmetic-add1-002", "What is 1 + 5? Reply with the number only.", ("6", "six"), "contains", "arithmetic"
    ),
    SuiteItem(
        "instruction-upper-001",
        "Write the word 'tomato' in capital letters and nothing else.",
        ("TOMATO",),
        "exact",
        "instruction",
    ),
    SuiteItem(
        "factual-fact-008", "What is the capital of China? Answer with one word.", ("Beijing",), "contains", "factual"
    ),
    SuiteItem(
        "letters-first-001",
        "What is the first letter of the word 'guitar'? Reply with the letter only.",
        ("g",),
        "exact",
        "letters",
    ),
    SuiteItem(
        "instruction-opposite-001",
        "What is the opposite of 'hot'? Answer with one word.",
        ("cold",),
        "contains",
        "instruction",
    ),
)
"""Prompts of ``calibration/suites/routing-suite.jsonl`` (same ids and answers), left out of the predictor's
training (see ``calibration/predictors/README.md``)."""

DEMO_PROMPTS: tuple[tuple[str, str], ...] = tuple((item.task_type or "", item.prompt) for item in DEMO_ITEMS)
"""(task type, prompt) pairs the demo answers."""

DEMO_PRESETS: tuple[str, ...] = ("accuracy-first", "balanced", "energy-first")


@dataclass(frozen=True)
class CallRecord:
    """One call as the demo reports it."""

    preset: str
    prompt: str
    model: str
    predicted_runtime_s: float
    runtime_s: float
    predicted_energy_j: float
    energy_j: float | None
    method: str
    answer: str
    correct: bool
    predicted_output_tokens: float
    output_tokens: int
    runtime_s_at_true_length: float
    """The runtime the same coefficients predict for the answer's real length (what is left of the error
    once the length is known)."""
    runtime_s_at_median: float | None = None
    """The runtime the same coefficients predict for the predicted median length (a typical answer; decisions
    sum the mean)."""
    runtime_s_before_repeats: float | None = None
    """The runtime predicted at the length the prompt alone predicts (before the repeat memory), if known."""
    predicted_output_tokens_before_repeats: float | None = None
    reason: str = ""
    """Why the router chose: every candidate's predicted accuracy, joules and cost."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's options (shared with the ``energyrouter`` CLI)."""
    parser.add_argument("--profile", default="cpu-reference", help="profile path or reference name")
    parser.add_argument("--models", nargs="+", default=["smollm2-135m", "gemma3-270m"], help="models to route")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="output cap per answer (tokens)")
    parser.add_argument("--prompts", type=int, default=len(DEMO_ITEMS), help="how many demo prompts to answer")
    parser.add_argument(
        "--predictor",
        default="packaged-models",
        help="per-prompt predictor: a path, a shipped name, or 'none' for the profile's figures only",
    )
    parser.add_argument(
        "--baseline-runs",
        type=int,
        default=2,
        help="times each model answers each prompt in step 1; the lowest reading prices the answer (default 2)",
    )
    parser.add_argument("--presets", nargs="+", default=list(DEMO_PRESETS), help="weight presets (see scoring.PRESETS)")
    parser.add_argument(
        "--learn-first",
        type=int,
        default=len(MACHINE_PROMPTS),
        help=f"answers per model, to prompts not in the demo, the router learns this machine's costs from before "
        f"step 1 (default {len(MACHINE_PROMPTS)}, the learners' min_obs; 0: step 1 starts from the profile's "
        "machine)",
    )


def _cell(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> list[CallRecord]:
    """Run the demo and print its tables; returns the routed calls (phase 2)."""

    from langchain_energyrouter.decide.scoring import PRESETS
    from langchain_energyrouter.models import load_chat_model
    from langchain_energyrouter.profile import EnergyProfile
    from langchain_energyrouter.router import EnergyAwareRouter

    _quiet_transformers()
    if args.baseline_runs < 1:
        raise ValueError(f"--baseline-runs {args.baseline_runs}: give 1 or more.")
    unknown = [p for p in args.presets if p not in PRESETS]
    if unknown:
        raise ValueError(f"Unknown preset(s) {unknown}; choose from {sorted(PRESETS)}.")
    profile = EnergyProfile.load_or_reference(args.profile)
    models = {}
    for name in args.models:
        start = time.perf_counter()
        models[name] = load_chat_model(name, max_new_tokens=args.max_new_tokens)
        loaded = time.perf_counter() - start
        start = time.perf_counter()
        warm_up(models[name])
        print(
            f"loaded {name} in {loaded:.1f} s, warmed up in {time.perf_counter() - start:.1f} s (not measured)",
            file=out,
            flush=True,
        )
    predictor = None if args.predictor == "none" else predictor_path(args.predictor)
    router = EnergyAwareRouter(
        models=models,
        energy_profile=profile,
        max_tokens=args.max_new_tokens,
        normalization="relative",  # keeps how much better a model is expected to be on *this* prompt
        prompt_routing=str(predictor) if predictor is not None else None,
    )
    learn_machine(router, list(models), args.learn_first, out)
    items = DEMO_ITEMS[: max(1, args.prompts)]
    estimated = " (estimates on this hardware)" if profile.energy_method == "estimate" else ""
    print(f"\nenergy method of the profile: {profile.energy_method}{estimated}", file=out)
    print(f"per-prompt predictor: {predictor or 'none (the profile per model and task type)'}", file=out)
    print("meas J marked ~: estimated from CPU time (no energy counter here); unmarked: measured", file=out)
    print("\n1. every model answers every prompt (for the baselines and the oracle; the router learns)", file=out)
    print(_HEADER + "\n" + "-" * len(_HEADER), file=out, flush=True)
    single: dict[tuple[str, str], CallRecord] = {}
    for item in items:
        for name in models:
            single[name, item.id] = record = _call(router, f"always {name}", item, model=name)
            print(_row(record), file=out, flush=True)
    priced = dict(single)
    for _ in range(args.baseline_runs - 1):
        for item in items:
            for name in models:
                again = _call(router, f"always {name}", item, model=name)
                best = priced[name, item.id]
                priced[name, item.id] = dataclasses.replace(
                    best,
                    runtime_s=min(best.runtime_s, again.runtime_s),
                    energy_j=min((j for j in (best.energy_j, again.energy_j) if j is not None), default=None),
                )
    if args.baseline_runs > 1:
        print(
            f"(each of these answers measured {args.baseline_runs} times: the lowest reading prices it below, "
            "since a busy machine only ever adds to a reading)",
            file=out,
        )
    print("\n2. each preset routes every prompt", file=out)
    print(_HEADER + "\n" + "-" * len(_HEADER), file=out, flush=True)
    records: list[CallRecord] = []
    for preset in args.presets:
        for item in items:
            record = _call(router, preset, item, weights=PRESETS[preset])
            records.append(record)
            print(_row(record), file=out, flush=True)
            print(f"{'':<22}   why: {record.reason}", file=out, flush=True)
    baselines = {name: [priced[name, item.id] for item in items] for name in models}
    oracle = [_oracle([priced[name, item.id] for name in models]) for item in items]
    _print_totals(records, baselines, oracle, out)
    _print_errors(records, list(single.values()), out)
    router.close()
    return records


def predictor_path(name: str) -> Path:
    """A predictor file: a path, or the name of one shipped with the package (``packaged-models``)."""
    try:
        return data_file(name, "predictors", ".json")
    except FileNotFoundError as err:
        raise ValueError(f"No predictor {name!r}: {err} Pass one written by `energyrouter train`, or 'none'.") from None


WARM_UP_PROMPT = "Say hello."
"""Not a demo prompt: a warm-up answer must not teach the repeat memory a demo prompt's length."""


def warm_up(model: Any) -> None:
    """One unmeasured answer, so the first measured call of ``model`` is not a cold one."""
    model.invoke(WARM_UP_PROMPT)


MACHINE_PROMPTS: tuple[str, ...] = (
    "Name a colour.",
    "List three fruits, separated by commas.",
    "Describe a cat in two sentences.",
)
"""Not demo prompts, of short to longer answers: what the router learns this machine's costs from first."""


def learn_machine(router: Any, models: Sequence[str], answers: int, out: TextIO) -> None:
    """``answers`` measured answers per model to :data:`MACHINE_PROMPTS` (cycled), routed to it, so the
    router's costs are this machine's, not the profile's machine's, when the demo's prompts come. The
    learners use their own figures after ``min_obs`` (3) readings: fewer leave the profile's."""
    if answers < 1:
        return
    for name in models:
        measured = []
        for i in range(answers):
            message = router.invoke(MACHINE_PROMPTS[i % len(MACHINE_PROMPTS)], model=name)
            measured.append(message.response_metadata["energy"]["runtime_s"])
        router.flush_learning()
        print(
            f"{name}: {answers} answers to prompts not in the demo teach the router this machine's costs "
            f"({', '.join(f'{s:.2f}' for s in measured)} s)",
            file=out,
            flush=True,
        )


def _reason(routing: dict[str, Any]) -> str:
    """One line: each eligible candidate's predicted accuracy, joules and cost, best first."""
    parts = []
    for name in routing["ranking"]:
        c = routing["candidates"][name]
        parts.append(f"{name} acc {c['accuracy']:.2f} {c['predicted_energy_j']:.1f} J cost {c['cost']:.3f}")
    why = " | ".join(parts) + " (lowest cost wins)"
    if routing.get("explored"):
        why += f"; explored instead of {routing['explored']['from']}"
    return why


def _oracle(answers: list[CallRecord]) -> CallRecord:
    """The cheapest right answer (by measured energy), else the cheapest answer."""
    right = [a for a in answers if a.correct] or answers
    return min(right, key=lambda a: a.energy_j or 0.0)


def _quiet_transformers() -> None:
    # A command-line demo: the weight-loading progress bars would bury the table.
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _call(router: Any, preset: str, item: SuiteItem, **options: Any) -> CallRecord:
    from langchain_core.messages import HumanMessage

    from langchain_energyrouter.calibration.accuracy import is_correct

    scheduler = router.scheduler
    before = {name: scheduler.learned(name) for name in scheduler.models}  # coefficients in force for this call
    message = router.invoke([HumanMessage(item.prompt)], task_type=item.task_type, **options)
    routing = message.response_metadata["routing"]
    energy = message.response_metadata["energy"]
    model = routing["served_by"]
    chosen = routing["candidates"][model]
    # Generation steps (the answer's tokens and the one that ended it), what runtime scales with.
    output_tokens = int(routing.get("generated_tokens") or (message.usage_metadata or {}).get("output_tokens", 0))
    at_true_length, _, _ = scheduler.predict_costs(
        model, chosen["input_tokens"], max(output_tokens, 1), chosen["in_flight"], learned=before[model]
    )
    median_tokens = chosen["output_tokens_median"]
    at_median = None
    if median_tokens is not None:
        at_median = scheduler.predict_costs(
            model, chosen["input_tokens"], max(median_tokens, 1.0), chosen["in_flight"], learned=before[model]
        )[0]
    tokens_before = routing.get("predicted_output_tokens_before_repeats")
    before_repeats = None
    if tokens_before is not None:
        before_repeats, _, _ = scheduler.predict_costs(
            model, chosen["input_tokens"], max(tokens_before, 1.0), chosen["in_flight"], learned=before[model]
        )
    return CallRecord(
        preset=preset,
        prompt=item.prompt,
        model=model,
        predicted_runtime_s=chosen["predicted_runtime_s"],
        runtime_s=energy["runtime_s"],
        predicted_energy_j=chosen["predicted_energy_j"],
        energy_j=energy["energy_j"],
        method=energy["method"],
        answer=str(message.content),
        correct=is_correct(str(message.content), item),
        predicted_output_tokens=chosen["predicted_output_tokens"],
        output_tokens=output_tokens,
        runtime_s_at_true_length=at_true_length,
        runtime_s_at_median=at_median,
        runtime_s_before_repeats=before_repeats,
        predicted_output_tokens_before_repeats=tokens_before,
        reason=_reason(routing),
    )


_HEADER = (
    f"{'preset':<22} {'prompt':<30} {'model':<13} {'pred s':>7} {'meas s':>7} {'pred J':>7} {'meas J':>7}  ok  answer"
)


def _row(r: CallRecord) -> str:
    measured = "n/a" if r.energy_j is None else f"{r.energy_j:7.1f}"
    est = "~" if r.method == "estimate" else " "
    return (
        f"{_cell(r.preset, 22):<22} {_cell(r.prompt, 30):<30} {r.model:<13} {r.predicted_runtime_s:7.2f} "
        f"{r.runtime_s:7.2f} {r.predicted_energy_j:7.1f} {est}{measured:>6}  {'yes' if r.correct else ' no'} "
        f"{_cell(r.answer, 36)}"
    )


def _print_totals(
    routed: list[CallRecord], baselines: dict[str, list[CallRecord]], oracle: list[CallRecord], out: TextIO
) -> None:
    """Per preset, per single model and for the oracle: score, runtime and energy over the same prompts.

    Every policy is priced with the measurements of step 1: a routed answer is the same greedy answer that
    model gave to that prompt there, so comparing those figures compares the choices, not two moments of a
    machine whose load changed in between (on a shared machine that alone moved the savings by 50 points).
    What the routed calls measured themselves is shown beside them.
    """
    measured = {(r.model, r.prompt): r for calls in baselines.values() for r in calls}

    def priced(records: list[CallRecord]) -> list[CallRecord]:
        return [measured.get((r.model, r.prompt), r) for r in records]

    def totals(records: list[CallRecord]) -> tuple[float, float, float]:
        score = sum(r.correct for r in records) / len(records)
        return score, sum(r.runtime_s for r in records), sum(r.energy_j or 0.0 for r in records)

    label = " (estimated)" if routed and routed[0].method == "estimate" else ""
    rows: list[tuple[str, list[CallRecord], list[CallRecord] | None]] = []
    for preset in dict.fromkeys(r.preset for r in routed):
        calls = [r for r in routed if r.preset == preset]
        used = ", ".join(f"{m} x{sum(r.model == m for r in calls)}" for m in sorted({r.model for r in calls}))
        rows.append((f"{preset} ({used})", priced(calls), calls))
    for name, calls in baselines.items():
        rows.append((f"always {name}", calls, None))
    rows.append(("oracle (cheapest right answer)", oracle, None))
    best_name = max(baselines, key=lambda n: totals(baselines[n])[0])
    _, _, best_j = totals(baselines[best_name])
    width = max(len(title) for title, _, _ in rows) + 2
    n = len(oracle)
    print("", file=out)
    print(
        f"{'per set of ' + str(n) + ' prompts':<{width}} {'score':>6} {'runtime s':>10} {'energy J' + label:>20} "
        f"{'vs always ' + best_name:>28} {'measured again in 2.':>22}",
        file=out,
    )
    for title, calls, again in rows:
        score, runtime_s, energy_j = totals(calls)
        if again is not None:
            score = totals(again)[0]  # graded on its own answer
        change = f"{100 * (energy_j / best_j - 1):+.0f}% energy" if best_j > 0 else "n/a"
        rerun = f"{totals(again)[2]:.1f} J, {totals(again)[1]:.2f} s" if again is not None else ""
        print(f"{title:<{width}} {score:6.2f} {runtime_s:10.2f} {energy_j:20.1f} {change:>28} {rerun:>22}", file=out)
    print(
        f"(score: share of answers graded right; always {best_name} is the more accurate model here. Runtime "
        "and energy of every row are step 1's measurements of the same answers, so the rows compare choices; "
        "the last column is what the routed calls measured in step 2, on a machine whose load may differ)",
        file=out,
    )
    differ = [r for r in routed if (r.model, r.prompt) in measured and measured[r.model, r.prompt].answer != r.answer]
    if differ:
        print(f"({len(differ)} routed answers differ from step 1's answer of the same model and prompt)", file=out)


def _mape(pairs: list[tuple[float, float]]) -> float:
    errors = [abs(p - m) / m for p, m in pairs if m > 0]
    return 100 * sum(errors) / len(errors) if errors else float("nan")


def _median_ape(pairs: list[tuple[float, float]]) -> float:
    errors = [abs(p - m) / m for p, m in pairs if m > 0]
    return 100 * statistics.median(errors) if errors else float("nan")


def _bias(pairs: list[tuple[float, float]]) -> float:
    """Summed predictions over summed measurements (1.00: the total is right), over the pairs the errors use."""
    kept = [(p, m) for p, m in pairs if m > 0]
    measured = sum(m for _, m in kept)
    return sum(p for p, _ in kept) / measured if measured > 0 else float("nan")


def _errors(pairs: list[tuple[float, float]]) -> str:
    return f"{_mape(pairs):.0f}% (MAPE; median {_median_ape(pairs):.0f}%; bias {_bias(pairs):.2f})"


def _print_errors(routed: list[CallRecord], forced: list[CallRecord], out: TextIO) -> None:
    """How far the runtime predictions were off, and how much of that is the answer's length (bias: summed
    predictions over summed measurements, what a capacity plan reads)."""
    print("", file=out)
    for title, calls in (
        ("the routed calls (2., prompts each model answered in 1.)", routed),
        ("the first calls (1., new prompts, cold start)", forced),
    ):
        pairs = [(r.predicted_runtime_s, r.runtime_s) for r in calls]
        mape = _mape(pairs)
        known = _mape([(r.runtime_s_at_true_length, r.runtime_s) for r in calls])
        lengths = [(r.predicted_output_tokens, float(r.output_tokens)) for r in calls if r.output_tokens]
        print(
            f"runtime prediction error over {title}: {_errors(pairs)}; {known:.0f}% had the answer's length been "
            f"known, so {max(mape - known, 0.0):.0f} points are the length; output-length error {_errors(lengths)}",
            file=out,
        )
    typical = [(r.runtime_s_at_median, r.runtime_s) for r in forced if r.runtime_s_at_median is not None]
    if typical:
        print(
            f"the same first calls priced at the predicted median length instead of the mean: {_errors(typical)} "
            "(a typical answer is usually shorter than the mean, which counts the answers that run long; decisions "
            "and totals use the mean)",
            file=out,
        )
    fresh = [r for r in routed if r.runtime_s_before_repeats is not None]
    if fresh:
        pairs = [(r.runtime_s_before_repeats or 0.0, r.runtime_s) for r in fresh]
        lengths = [
            (r.predicted_output_tokens_before_repeats or 0.0, float(r.output_tokens)) for r in fresh if r.output_tokens
        ]
        print(
            f"runtime prediction error over the routed calls without the repeat memory (each prompt's length "
            f"predicted as if new, this machine's learned costs kept): {_errors(pairs)}; "
            f"output-length error {_errors(lengths)}",
            file=out,
        )


DESCRIPTION = """\
Route real, graded prompts across the packaged models (SmolLM2-135M-Instruct and Gemma-3-270M) with the
CPU reference profile and the packaged per-prompt predictor, learning from every call.

0. each model answers one warm-up prompt, not measured;
1. every model answers every prompt (the "always this model" baselines and the oracle; the router learns
   this machine's costs as it goes);
2. each weight preset routes every prompt; a line under each answer says why (every candidate's predicted
   accuracy, joules and cost; the lowest cost wins).

At the end: per preset the score and energy next to each single model and the oracle (the cheapest model
that answers right), and how far the runtime predictions were off."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="energyrouter demo", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    run(build_parser().parse_args(argv))
    return 0


# -- the `energyrouter demo` command: every argument after `demo` is the demo's own (its --help included) --
def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``demo`` (its ``--help`` and options belong to the demo)."""
    p = sub.add_parser("demo", parents=[common], help="route graded prompts across the packaged models", add_help=False)
    p.add_argument("demo_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    """Run the demo with the command's arguments."""
    return int(main(args.demo_args) or 0)
