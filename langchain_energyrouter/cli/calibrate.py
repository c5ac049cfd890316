"""``energyrouter calibrate MODEL ...``: measure models on a designed grid plus natural prompts, then fit a
profile in one go."""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from typing import Any

from langchain_energyrouter.cli.fit import fit_row, merge_or_new
from langchain_energyrouter.cli.util import invocation, load_model, number_pairs, resolve_device, say, table
from langchain_energyrouter.errors import CalibrationError
from langchain_energyrouter.profile import DeviceInfo, EnergyProfile


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``calibrate``."""
    from langchain_energyrouter.calibration.runner import DEFAULT_NATURAL_MAX_NEW_TOKENS as DEFAULT_NATURAL_BUDGET

    p = sub.add_parser(
        "calibrate",
        parents=[common],
        help="profile models and fit a profile in one go",
        description="Measure models on a designed grid (exact input lengths x forced output "
        "lengths) plus natural prompts, then fit runtime, energy and output length.",
    )
    p.add_argument("models", nargs="+", metavar="MODEL", help="short name, local directory, .gguf file or HF id")
    p.add_argument("--out", required=True, help="profile JSON to write (models are merged into an existing one)")
    p.add_argument("--device", default="auto", help="torch device: auto (default), cpu, cuda:0, ...")
    p.add_argument("--dtype", default="auto", help="torch dtype (default auto: the checkpoint's own)")
    p.add_argument("--suite", help="JSONL of natural prompts (default: the packaged chat prompts)")
    p.add_argument("--max-minutes", type=float, help="time budget for all measurements; the design shrinks to fit")
    p.add_argument("--repetitions", type=int, default=2, help="repetitions of each grid cell (default 2)")
    p.add_argument("--warmup", type=int, default=2, help="unrecorded warm-up generations per model (default 2)")
    p.add_argument("--cooldown", type=float, default=0.0, help="seconds to sleep between runs (default 0)")
    p.add_argument("--raw-dir", help="where raw CSVs go (default: <out>-raw/ next to --out)")
    p.add_argument(
        "--input-lengths", default="16,64,256,512", help="grid input lengths, tokens (default 16,64,256,512)"
    )
    p.add_argument("--output-lengths", default="4,16,48", help="forced output lengths, tokens (default 4,16,48)")
    p.add_argument(
        "--natural-max-new-tokens",
        type=int,
        default=DEFAULT_NATURAL_BUDGET,
        help="generation budget for natural prompts; answers reaching it are censored "
        f"(default {DEFAULT_NATURAL_BUDGET})",
    )
    p.add_argument("--accuracy", action="append", metavar="NAME=VALUE", help="set a model's accuracy")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument(
        "--concurrency",
        default="1",
        help="requests in flight to measure each grid cell at, e.g. 1,2,4 (one batched generate each; "
        "more than one level fits the profile's load model; default 1)",
    )
    p.add_argument("--seed", type=int, default=0, help="shuffle and CV seed (default 0)")
    p.add_argument("--description", help="profile description")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import gc

    from langchain_energyrouter.calibration.accuracy import score_outputs
    from langchain_energyrouter.calibration.design import (
        default_natural_suite,
        load_suite,
        parse_concurrency,
        parse_lengths,
    )
    from langchain_energyrouter.calibration.loadfit import at_reference_load, with_load_model
    from langchain_energyrouter.calibration.profilefit import fit_model
    from langchain_energyrouter.calibration.progress import format_seconds
    from langchain_energyrouter.calibration.rawdata import read_raw
    from langchain_energyrouter.calibration.runner import RunSettings, calibration_meter, read_outputs, run_model

    started = time.monotonic()
    out = Path(args.out)
    settings = RunSettings(
        input_lengths=parse_lengths(args.input_lengths, "--input-lengths"),
        output_lengths=parse_lengths(args.output_lengths, "--output-lengths"),
        repetitions=args.repetitions,
        warmup=args.warmup,
        cooldown_s=args.cooldown,
        seed=args.seed,
        natural_max_new_tokens=args.natural_max_new_tokens,
        concurrency=parse_concurrency(args.concurrency),
    )
    if args.repetitions < 1:
        raise CalibrationError(f"--repetitions {args.repetitions}: give at least 1.")
    suite = load_suite(args.suite) if args.suite else load_suite(default_natural_suite())
    accuracy_override = number_pairs(args.accuracy, "--accuracy", float)
    existing = EnergyProfile.load(out) if out.exists() else None
    raw_dir = Path(args.raw_dir) if args.raw_dir else out.parent / f"{out.stem}-raw"
    device = resolve_device(args.device)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    meter = calibration_meter(device)  # only the device the models run on (issue 12, item 4)
    if existing is not None and existing.energy_method != meter.method:
        raise CalibrationError(
            f"{out} was measured with {existing.energy_method!r}, this machine measures {meter.method!r}; "
            "write to another --out rather than mixing the two."
        )
    models: dict[str, Any] = {}
    summary: list[list[str]] = []

    def profile_so_far() -> EnergyProfile:
        return merge_or_new(
            existing,
            models,
            command=invocation(args),
            device=_device_info(device),
            energy_method=meter.method,
            description=args.description or "Calibrated with `energyrouter calibrate`.",
        )

    try:
        for index, spec in enumerate(args.models):
            t_load = time.monotonic()
            resolved, model, tokenizer = load_model(spec, device, args.dtype)
            name = resolved.display_name
            say(f"{name}: loaded {spec} in {time.monotonic() - t_load:.1f} s")
            if index == 0 and meter.method == "estimate":
                say("energy: no hardware meter here, using the estimate meter (joules are ESTIMATES from CPU time)")
            budget = None
            if args.max_minutes is not None:
                left = args.max_minutes * 60 - (time.monotonic() - started)
                budget = max(left, 0.0) / (len(args.models) - index)
            settings.budget_s = budget
            result = run_model(
                name,
                model,
                tokenizer,
                meter,
                raw_dir / f"{name}.csv",
                settings,
                suite,
                context={"device": device, "dtype": args.dtype, "threads": args.threads, "model": spec},
            )
            del model
            gc.collect()
            raw = read_raw(result.raw_path, warn=say)
            outputs = {k: v.get("output", "") for k, v in read_outputs(result.outputs_path).items()}
            accuracy, by_task = 0.5, {}
            if name in accuracy_override:
                accuracy = accuracy_override[name]
            elif any(item.labelled and item.id in outputs for item in suite):
                scored = score_outputs(suite, outputs)
                accuracy, by_task = scored.accuracy, scored.accuracy_by_task
            elif existing is not None and name in existing.models:
                accuracy = existing.models[name].accuracy
                by_task = dict(existing.models[name].accuracy_by_task)
            else:
                say(
                    f"{name}: accuracy unknown (the suite is unlabelled): set to 0.5 as a placeholder. "
                    f"Run `energyrouter accuracy --profile {out} --suite LABELLED.jsonl {name}`."
                )
            profile_entry, _report = fit_model(
                name,
                dataclasses.replace(raw, frame=at_reference_load(raw.frame)),  # cost models: one request in flight
                accuracy=accuracy,
                accuracy_by_task=by_task,
                context_window=result.context_window,
                model_id=spec,
                length_rows="natural",
                censored_at=args.natural_max_new_tokens,
                seed=args.seed,
                warn=say,
            )
            profile_entry = with_load_model(profile_entry, raw.frame, seed=args.seed, warn=say)
            models[name] = profile_entry
            profile_so_far().save(out)  # after every model, so a later model's failure keeps this one's fit
            summary.append(
                fit_row(
                    name,
                    profile_entry,
                    [f"{result.measured}/{result.skipped}/{result.not_run}", format_seconds(result.wall_s)],
                )
            )
    finally:
        meter.close()
    profile = profile_so_far()
    profile.save(out)
    print(
        table(
            [
                "model",
                "runs new/resumed/not run",
                "time",
                "rows",
                "runtime fit",
                "energy fit",
                "output length",
                "accuracy",
            ],
            summary,
        )
    )
    print(f"wrote {out} (energy method: {meter.method}; raw rows in {raw_dir})")
    return 0


def _device_info(device: str) -> Any:

    if device.startswith("cuda"):
        import torch

        index = int(device.split(":")[1]) if ":" in device else 0
        return DeviceInfo(name=torch.cuda.get_device_name(index), kind="cuda")
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return DeviceInfo(name=f"{os.cpu_count()}-core {platform.machine()} CPU ({cpu})", kind="cpu")


__all__ = ["add_parser", "run"]
