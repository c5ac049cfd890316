"""The ``energyrouter`` command: calibrate, fit, accuracy, explain, plot, demo.

``main(argv) -> int``: 0 on success, 1 on any error (printed as one line on
stderr; ``--debug`` shows the traceback instead). Heavy packages (pandas,
statsmodels, torch, transformers, matplotlib) are imported inside the commands
that need them, so ``energyrouter --help`` stays fast.

Examples::

    energyrouter calibrate smollm2-135m gemma3-270m --out profile.json --max-minutes 5
    energyrouter fit --raw phi-3-mini=phi3.csv.gz --accuracy phi-3-mini=0.685 --out profile.json
    energyrouter accuracy --profile profile.json --suite calibration/suites/qa-small.jsonl smollm2-135m
    energyrouter explain --profile profile.json --weights energy-first "What is 2 + 2?"
    energyrouter plot --profile profile.json --out plots/
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, NoReturn

from langchain_energyrouter.errors import CalibrationError, EnergyRouterError
from langchain_energyrouter.profile import DeviceInfo, EnergyProfile

PROG = "energyrouter"


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{message} (see `{self.prog} --help`)")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- argument helpers -----------------------------------------------------------
def _pairs(specs: Sequence[str] | None, what: str) -> dict[str, str]:
    from langchain_energyrouter.calibration.rawdata import parse_name_path

    out: dict[str, str] = {}
    for spec in specs or ():
        name, value = parse_name_path(spec, what)
        out[name] = value
    return out


def _number_pairs(specs: Sequence[str] | None, what: str, kind: type) -> dict[str, Any]:
    out = {}
    for name, value in _pairs(specs, what).items():
        try:
            out[name] = kind(value)
        except ValueError:
            raise CalibrationError(f"{what} {name}={value!r}: {value!r} is not a valid {kind.__name__}.") from None
    return out


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


def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def _load(spec: str, device: str, dtype: str) -> tuple[Any, Any, Any]:
    """(resolved, model, tokenizer); any failure becomes one CalibrationError line."""
    try:
        from langchain_energyrouter.models import load_model_and_tokenizer, resolve_model
    except ImportError as err:
        raise CalibrationError(
            f"Cannot load models: {err}. Install with: pip install 'langchain-energyrouter[hf]'"
        ) from err
    try:
        resolved = resolve_model(spec)
        model, tokenizer = load_model_and_tokenizer(resolved, device=device, dtype=dtype)
    except EnergyRouterError:
        raise
    except Exception as err:
        raise CalibrationError(f"Model {spec!r} failed to load: {type(err).__name__}: {err}") from err
    return resolved, model, tokenizer


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fit_row(name: str, mp: Any, extra: Sequence[str] = ()) -> list[str]:
    def cost(cm: Any) -> str:
        fit = cm.fit
        est = fit.note.split(" by ")[0].removeprefix("Chose ") if fit and fit.note.startswith("Chose") else "?"
        mape = f"{fit.mape_holdout:.1%}" if fit and fit.mape_holdout is not None else "-"
        bias = f", bias {fit.bias_holdout:.3f}" if fit and fit.bias_holdout is not None else ""
        held = f", {'+'.join(fit.constrained)} held at 0" if fit and fit.constrained else ""
        return f"{est} (CV MAPE {mape}{bias}{held})"

    ol = mp.output_length
    length = (
        f"fitted {ol.intercept:.1f}+{ol.slope:.3f}*tin (MAPE {ol.fit.mape_holdout:.0%}"
        + (f", bias {ol.fit.bias_holdout:.3f}" if ol.fit.bias_holdout is not None else "")
        + (f", censored at {ol.censored_at}" if ol.censored_at else "")
        + ")"
        if ol.source == "fitted" and ol.fit and ol.fit.mape_holdout is not None
        else ("heuristic 44.12+1.028*tin" if ol.source == "heuristic" else f"fitted {ol.intercept:.1f} (lower bound)")
    )
    n = mp.runtime.fit.n if mp.runtime.fit else 0
    dropped = mp.runtime.fit.rows_dropped if mp.runtime.fit else 0
    return [
        name,
        *extra,
        f"{n}" + (f" (-{dropped})" if dropped else ""),
        cost(mp.runtime),
        cost(mp.energy),
        length,
        f"{mp.accuracy:.3f}",
    ]


# -- calibrate ------------------------------------------------------------------
def cmd_calibrate(args: argparse.Namespace) -> int:
    import dataclasses
    import gc

    from langchain_energyrouter.calibration.accuracy import score_outputs
    from langchain_energyrouter.calibration.design import (
        default_natural_suite,
        load_suite,
        parse_concurrency,
        parse_lengths,
    )
    from langchain_energyrouter.calibration.fitting import fit_model
    from langchain_energyrouter.calibration.load import at_reference_load, with_load_model
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
    accuracy_override = _number_pairs(args.accuracy, "--accuracy", float)
    existing = EnergyProfile.load(out) if out.exists() else None
    raw_dir = Path(args.raw_dir) if args.raw_dir else out.parent / f"{out.stem}-raw"
    device = _resolve_device(args.device)
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
    try:
        for index, spec in enumerate(args.models):
            t_load = time.monotonic()
            resolved, model, tokenizer = _load(spec, device, args.dtype)
            name = resolved.display_name
            _say(f"{name}: loaded {spec} in {time.monotonic() - t_load:.1f} s")
            if index == 0 and meter.method == "estimate":
                _say("energy: no hardware meter here, using the estimate meter (joules are ESTIMATES from CPU time)")
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
            raw = read_raw(result.raw_path, warn=_say)
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
                _say(
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
                warn=_say,
            )
            profile_entry = with_load_model(profile_entry, raw.frame, seed=args.seed, warn=_say)
            models[name] = profile_entry
            # saved after every model, so a later model's failure keeps this one's fit
            _merge_or_new(
                existing,
                models,
                command=_invocation(args),
                device=_device_info(device),
                energy_method=meter.method,
                description=args.description or "Calibrated with `energyrouter calibrate`.",
            ).save(out)
            summary.append(
                _fit_row(
                    name,
                    profile_entry,
                    [f"{result.measured}/{result.skipped}/{result.not_run}", format_seconds(result.wall_s)],
                )
            )
    finally:
        meter.close()
    profile = _merge_or_new(
        existing,
        models,
        command=_invocation(args),
        device=_device_info(device),
        energy_method=meter.method,
        description=args.description or "Calibrated with `energyrouter calibrate`.",
    )
    profile.save(out)
    print(
        _table(
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


# -- fit ------------------------------------------------------------------------
def cmd_fit(args: argparse.Namespace) -> int:
    import dataclasses

    from langchain_energyrouter.calibration.fitting import ESTIMATORS, fit_model
    from langchain_energyrouter.calibration.load import at_reference_load, with_load_model
    from langchain_energyrouter.calibration.rawdata import read_raw

    raws = _pairs(args.raw, "--raw")
    accuracy = _number_pairs(args.accuracy, "--accuracy", float)
    windows = _number_pairs(args.context_window, "--context-window", int)
    model_ids = _pairs(args.model_id, "--model-id")
    served_caps = _number_pairs(args.max_output_tokens, "--max-output-tokens", int)
    estimators = tuple(e.strip() for e in args.estimators.split(",") if e.strip())
    unknown = [e for e in estimators if e not in ESTIMATORS]
    if unknown or not estimators:
        raise CalibrationError(f"--estimators {args.estimators!r}: unknown {unknown}; choose from {list(ESTIMATORS)}.")
    for option, mapping in (
        ("--accuracy", accuracy),
        ("--context-window", windows),
        ("--model-id", model_ids),
        ("--max-output-tokens", served_caps),
    ):
        stray = sorted(set(mapping) - set(raws))
        if stray:
            raise CalibrationError(f"{option} names {stray}, which have no --raw file; raw models: {sorted(raws)}.")
    out = Path(args.out)
    existing = EnergyProfile.load(out) if out.exists() and not args.replace else None
    read = {name: read_raw(path, warn=_say) for name, path in raws.items()}
    methods = {m for raw in read.values() if "energy_method" in raw.frame.columns for m in raw.frame["energy_method"]}
    energy_method = args.energy_method or (methods.pop() if len(methods) == 1 else None)
    if existing is not None:
        if energy_method is not None and energy_method != existing.energy_method:
            raise CalibrationError(
                f"{out} holds {existing.energy_method!r} energy, these rows are {energy_method!r}; "
                "write them to another --out (or pass --replace)."
            )
        energy_method = existing.energy_method
    if energy_method is None:
        raise CalibrationError(
            "How was energy measured? Pass --energy-method (nvml_counter, nvml_poll, rapl, estimate, none)"
            + (f"; the raw files mix {sorted(methods)}" if methods else "; the raw files do not say")
            + "."
        )
    models = {}
    summary = []
    for name, raw in read.items():
        if name in accuracy:
            acc, by_task = accuracy[name], {}
        elif existing is not None and name in existing.models:
            acc, by_task = existing.models[name].accuracy, dict(existing.models[name].accuracy_by_task)
        else:
            raise CalibrationError(f"No accuracy for {name!r}; pass --accuracy {name}=VALUE (a number in [0, 1]).")
        window = windows.get(name)
        if window is None:
            window = existing.models[name].context_window if existing and name in existing.models else 4096
            if not (existing and name in existing.models):
                _say(f"{name}: no --context-window given; assuming 4096 tokens")
        _say(f"{name}: fitting {len(raw.frame)} rows of {raw.path} ...")
        mp, _report = fit_model(
            name,
            dataclasses.replace(raw, frame=at_reference_load(raw.frame)),  # cost models: the reference load's rows
            accuracy=acc,
            accuracy_by_task=by_task,
            context_window=window,
            model_id=model_ids.get(name),
            estimators=estimators,
            folds=args.folds,
            seed=args.seed,
            length_rows=args.length_rows,
            censored_at=_censored_at(args.censored_at),
            cv=args.cv,
            warn=_say,
        )
        if existing is not None and name in existing.models:
            # Per-task answer lengths come from `energyrouter accuracy`, not from raw rows: keep them.
            kept = existing.models[name].output_length.by_task
            mp = mp.model_copy(update={"output_length": mp.output_length.model_copy(update={"by_task": dict(kept)})})
        if name in served_caps:  # the deployment's generation limit: a hard cap on predicted answers
            cap = served_caps[name]
            if cap < 1:
                raise CalibrationError(f"--max-output-tokens {name}={cap}: give a positive number of tokens.")
            mp = mp.model_copy(update={"output_length": mp.output_length.model_copy(update={"max_output_tokens": cap})})
        mp = with_load_model(mp, raw.frame, seed=args.seed, warn=_say)  # when the rows hold several in_flight levels
        models[name] = mp
        summary.append(_fit_row(name, mp))
    profile = _merge_or_new(
        existing,
        models,
        command=_invocation(args),
        device=DeviceInfo(name=args.device_name, kind=args.device_kind),
        energy_method=energy_method,
        description=args.description or "Fitted with `energyrouter fit` from raw measurements.",
    )
    # Round-trip through validation so an inconsistent result fails here, not when the router loads it.
    profile = EnergyProfile.from_dict(profile.model_dump(mode="json"), origin=str(out))
    profile.save(out)
    print(_table(["model", "rows", "runtime fit", "energy fit", "output length", "accuracy"], summary))
    print(f"wrote {out}")
    return 0


def _censored_at(text: str) -> int | Literal["auto"] | None:
    """``--censored-at``: ``auto``, ``none`` or a positive number of tokens."""
    if text in ("auto", "none"):
        return None if text == "none" else "auto"
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise CalibrationError(
            f"--censored-at {text!r}: give the generation budget in tokens (e.g. 50), auto (detect it) or none."
        )
    return value


def _merge_or_new(
    existing: EnergyProfile | None,
    models: dict[str, Any],
    *,
    command: str,
    device: DeviceInfo,
    energy_method: str,
    description: str,
) -> EnergyProfile:
    """A new profile, or ``existing`` with ``models`` added (refusing to mix energy methods)."""
    if existing is None:
        return EnergyProfile.new(
            models,
            device=device,
            energy_method=energy_method,  # type: ignore[arg-type]
            description=description,
            source=command,
        )
    if existing.energy_method != energy_method:
        raise CalibrationError(
            f"{existing.origin} holds energy measured by {existing.energy_method!r}, these rows by "
            f"{energy_method!r}; joules of different methods do not belong in one profile. "
            "Write to another --out (or pass --replace to fit)."
        )
    return existing.with_models(models).model_copy(update={"source": _then(existing.source, command)})


def _invocation(args: argparse.Namespace) -> str:
    """The command line that is running, for a profile's ``source``."""
    return f"{PROG} {args.command} " + shlex.join(sys.argv[2:] if args.argv is None else args.argv[1:])


def _then(source: str, command: str) -> str:
    return f"{source}; then: {command}" if source else command


# -- accuracy -------------------------------------------------------------------
def _tick(progress: Any, item: Any, text: str, ok: bool) -> None:
    progress.update(1, f"{item.id} {'ok' if ok else 'wrong'}")


def cmd_accuracy(args: argparse.Namespace) -> int:
    from langchain_energyrouter.calibration.accuracy import outcome_rows, print_result, score_model
    from langchain_energyrouter.calibration.design import load_suite
    from langchain_energyrouter.calibration.progress import Progress
    from langchain_energyrouter.outcomes import OutcomeRow, write_matrix

    profile = EnergyProfile.load(args.profile)
    suite = load_suite(args.suite)
    labelled = [item for item in suite if item.labelled]
    if not labelled:
        raise CalibrationError(f"Suite {args.suite} has no labelled items ('answer' fields); nothing to score.")
    specs = []
    for spec in args.models:
        name, sep, source = spec.partition("=")
        if not sep:
            source = profile.model(name).model_id or name
        else:
            profile.model(name)
        specs.append((name, source))
    device = _resolve_device(args.device)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    meter = None
    if args.outcomes:
        from langchain_energyrouter.calibration.runner import calibration_meter

        meter = calibration_meter(device)
    outcomes: list[OutcomeRow] = []
    updated = {}
    for name, source in specs:
        _resolved, model, tokenizer = _load(source, device, args.dtype)
        progress = Progress(len(labelled), name)
        result, _outputs = score_model(
            model,
            tokenizer,
            suite,
            max_new_tokens=args.max_new_tokens,
            on_item=functools.partial(_tick, progress),
            meter=meter,
        )
        print_result(name, result)
        if args.outcomes:  # written after every model, so a later failure keeps the finished ones
            outcomes.extend(outcome_rows(name, suite, result))
            write_matrix(args.outcomes, outcomes)
            print(f"wrote {len(outcomes)} outcome rows to {args.outcomes}")
        entry = profile.models[name]
        # Answer lengths per task type refine the output-length prediction of requests that
        # name their task type (the answers are capped at --max-new-tokens, as requests are).
        lengths = {**entry.output_length.by_task, **result.output_tokens_by_task}
        updated[name] = entry.model_copy(
            update={
                "accuracy": result.accuracy,
                "accuracy_by_task": result.accuracy_by_task,
                "output_length": entry.output_length.model_copy(update={"by_task": lengths}),
            }
        )
        del model
    updated_profile = profile.with_models(updated).model_copy(
        update={"source": _then(profile.source, _invocation(args))}
    )
    new = EnergyProfile.from_dict(updated_profile.model_dump(mode="json"), origin=str(args.profile))
    new.save(args.profile)
    print(f"wrote accuracy for {', '.join(updated)} into {args.profile}")
    return 0


# -- explain --------------------------------------------------------------------
def _weights(text: str | None) -> Any:
    from langchain_energyrouter.errors import WeightsError
    from langchain_energyrouter.scoring import PRESETS, Weights

    if text is None:
        return None
    if text in PRESETS:
        return PRESETS[text]
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise WeightsError(
            f"--weights {text!r} is neither A,E,T numbers (e.g. 0.6,0.3,0.1) nor a preset {sorted(PRESETS)}."
        ) from None
    return Weights.coerce(values)


def cmd_explain(args: argparse.Namespace) -> int:
    import json

    from langchain_energyrouter.calibration.explain import as_json, count_tokens, render_table
    from langchain_energyrouter.scheduler import Scheduler

    profile = EnergyProfile.load(args.profile)
    scheduler = Scheduler(
        profile,
        _weights(args.weights),
        args.normalization,
        models=args.models.split(",") if args.models else None,
        on_infeasible="least_violating",
    )
    counts, methods = count_tokens(profile, args.prompt, scheduler.models, use_tokenizers=not args.approx_tokens)
    decision = scheduler.decide(counts, args.max_tokens, task_type=args.task_type)
    if args.json:
        print(json.dumps(as_json(decision, methods, args.prompt), indent=2))
    else:
        print(render_table(decision, methods))
    return 0


# -- plot -----------------------------------------------------------------------
def cmd_plot(args: argparse.Namespace) -> int:
    from langchain_energyrouter.calibration.plots import write_plots

    profile = EnergyProfile.load(args.profile)
    raws = _pairs(args.raw, "--raw")
    for name in raws:
        profile.model(name)
    written = write_plots(
        profile,
        Path(args.out),
        raws=raws,
        prompt_tokens=args.prompt_tokens,
        normalization=args.normalization,
        warn=_say,
    )
    for path in written:
        print(path)
    return 0


# -- replay ---------------------------------------------------------------------
def cmd_replay(args: argparse.Namespace) -> int:
    import json

    from langchain_energyrouter.calibration.progress import Progress
    from langchain_energyrouter.calibration.rawdata import read_raw
    from langchain_energyrouter.calibration.replay import as_json, render_table, replay_trace

    raws = _pairs(args.raw, "--raw")
    read = {name: read_raw(path, warn=_say) for name, path in raws.items()}
    results = {}
    for name, raw in read.items():
        bars: list[Progress] = []  # drawn from the first replayed rows on: a bad split errors before any bar

        def advance(rows: int, name: str = name, total: int = len(raw.frame), bars: list[Progress] = bars) -> None:
            if not bars:
                bars.append(Progress(total - int(args.prior_fraction * total), f"{name} replay"))
            bars[0].update(rows)

        try:
            results[name] = replay_trace(
                name, raw, prior_fraction=args.prior_fraction, energy_method=args.energy_method, on_rows=advance
            )
        finally:
            for bar in bars:
                bar.close()
    if args.json:
        print(json.dumps(as_json(results), indent=2))
    else:
        print(render_table(results))
    return 0


# -- train ----------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    import json

    from langchain_energyrouter.outcomes import read_matrix
    from langchain_energyrouter.quality import PromptPredictor

    rows = read_matrix(args.matrix).rows
    started = time.perf_counter()
    predictor = PromptPredictor.train(
        rows,
        encoder=args.encoder,
        min_rows=args.min_rows,
        censored_at="auto" if args.censored_at is None else (None if args.censored_at == 0 else args.censored_at),
        source=str(args.matrix),
    )
    predictor.save(args.out)
    models: dict[str, dict[str, Any]] = {
        m: {
            "rows": q.n_rows,
            "mean_score": round(q.mean_score, 4),
            "cv_log_loss": q.cv_log_loss,
            "cv_log_loss_mean_only": q.cv_log_loss_mean_only,
            "censored_at": q.censored_at,
            "censored_rows": q.n_censored,
        }
        for m, q in predictor.spec.models.items()
    }
    train_s = round(time.perf_counter() - started, 2)
    if args.json:
        summary = {"out": str(args.out), "encoder": predictor.spec.encoder, "train_s": train_s, "models": models}
        print(json.dumps(summary, indent=2))
        return 0
    print(f"wrote {args.out}: encoder {predictor.spec.encoder}, {train_s} s")
    for m, info in models.items():
        cv = info["cv_log_loss"]
        gain = "" if cv is None else f", held-out log-loss {cv:.3f} (mean only {info['cv_log_loss_mean_only']:.3f})"
        print(f"  {m}: {info['rows']} rows, mean score {info['mean_score']}{gain}, censored {info['censored_rows']}")
    left_out = sorted({r.model for r in rows} - set(models))
    if left_out:
        _say(f"left out (fewer than {args.min_rows} rows; their profile accuracy is used): {', '.join(left_out)}")
    return 0


# -- demo -----------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    import importlib

    try:
        demo = importlib.import_module("langchain_energyrouter.demo")
    except ModuleNotFoundError as err:
        if err.name != "langchain_energyrouter.demo":
            raise
        raise CalibrationError(
            "The demo is not available in this version (langchain_energyrouter.demo is missing)."
        ) from None
    return int(demo.main(args.demo_args) or 0)


# -- parser ---------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from langchain_energyrouter.calibration.accuracy import DEFAULT_MAX_NEW_TOKENS
    from langchain_energyrouter.calibration.runner import DEFAULT_NATURAL_MAX_NEW_TOKENS as DEFAULT_NATURAL_BUDGET

    common = _Parser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks instead of one-line errors"
    )
    parser = _Parser(
        prog=PROG, description="Calibrate, fit, inspect and plot energy-router profiles.", parents=[common]
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

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
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser(
        "fit",
        parents=[common],
        help="fit a profile from raw CSVs (also the original traces)",
        description="Fit runtime and energy (least squares and relative-error estimators with non-negative "
        "per-token slopes, with and without the interaction term, chosen by held-out bias, then MAPE) and output "
        "length (censored at the generation budget) from raw CSVs.",
    )
    p.add_argument("--raw", action="append", required=True, metavar="NAME=PATH", help="a model's raw CSV (.csv.gz ok)")
    p.add_argument("--accuracy", action="append", metavar="NAME=VALUE", help="a model's accuracy in [0, 1]")
    p.add_argument("--context-window", action="append", metavar="NAME=N", help="a model's context window, tokens")
    p.add_argument("--model-id", action="append", metavar="NAME=ID", help="where the model came from (for people)")
    p.add_argument(
        "--max-output-tokens",
        action="append",
        metavar="NAME=N",
        help="the deployment's generation limit (max new tokens it serves): caps predicted answers",
    )
    p.add_argument("--out", required=True, help="profile JSON to write (models are merged into an existing one)")
    p.add_argument("--replace", action="store_true", help="overwrite --out instead of merging into it")
    p.add_argument(
        "--energy-method",
        choices=["nvml_counter", "nvml_poll", "rapl", "estimate", "none"],
        help="how the raw energy was measured (default: the raw files' energy_method column)",
    )
    p.add_argument("--device-name", default="unknown device", help="the device the rows were measured on")
    p.add_argument("--device-kind", default="other", choices=["cuda", "cpu", "mps", "other"])
    p.add_argument("--estimators", default="ols,wls_rel,lad_rel", help="estimators to try (default all)")
    p.add_argument("--folds", type=int, default=5, help="k of k-fold cross-validation (default 5)")
    p.add_argument(
        "--cv",
        default="auto",
        choices=["auto", "grouped", "blocked", "forward", "random"],
        help="held-out rows: auto (grouped by design cell if the file has cells, else blocked in time order)",
    )
    p.add_argument(
        "--censored-at",
        default="auto",
        help="generation budget of the rows (answers this long were cut): tokens, auto (detect) or none",
    )
    p.add_argument(
        "--length-rows",
        default="auto",
        choices=["auto", "natural", "all"],
        help="rows for the output-length fit (auto: natural rows if the file has design cells)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--description", help="profile description")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("accuracy", parents=[common], help="score models on a labelled suite, write into a profile")
    p.add_argument("models", nargs="+", metavar="MODEL", help="profile model name, or NAME=MODEL to load MODEL")
    p.add_argument("--profile", required=True)
    p.add_argument("--suite", required=True, help="labelled JSONL: id, prompt, answer, match, task_type")
    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=DEFAULT_MAX_NEW_TOKENS,
        help=f"answer length cap (default {DEFAULT_MAX_NEW_TOKENS})",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument(
        "--outcomes",
        metavar="OUT.jsonl",
        help="also write every prompt's per-model outcome (score, tokens, runtime, energy) as an outcome matrix",
    )
    p.set_defaults(func=cmd_accuracy)

    p = sub.add_parser("explain", parents=[common], help="show the routing decision for a prompt")
    p.add_argument("prompt")
    p.add_argument("--profile", required=True)
    p.add_argument(
        "--weights", help="A,E,T (accuracy, energy, time) or a preset: accuracy-first, balanced, energy-first"
    )
    p.add_argument("--normalization", default="minmax", help="minmax (default), relative or hybrid")
    p.add_argument("--max-tokens", type=int, help="the request's output cap")
    p.add_argument("--task-type", help="use per-task accuracy")
    p.add_argument("--models", help="comma-separated subset of the profile's models")
    p.add_argument("--approx-tokens", action="store_true", help="count chars/4 instead of loading tokenizers")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("plot", parents=[common], help="write PNG plots of a profile")
    p.add_argument("--profile", required=True)
    p.add_argument("--out", required=True, help="directory for the PNGs")
    p.add_argument("--raw", action="append", metavar="NAME=PATH", help="raw CSVs for fit diagnostics")
    p.add_argument("--prompt-tokens", type=int, default=32, help="prompt length for the trade-off plots (default 32)")
    p.add_argument("--normalization", default="minmax")
    p.set_defaults(func=cmd_plot)

    from langchain_energyrouter.calibration import statecmd

    statecmd.add_parser(sub, common)

    from langchain_energyrouter.calibration import servecmd

    servecmd.add_parser(sub, common)

    from langchain_energyrouter.calibration import evaluate

    evaluate.add_parser(sub, common)

    p = sub.add_parser(
        "train",
        parents=[common],
        help="fit per-prompt quality and length predictors on an outcome matrix",
        description="Fit, per model, the expected score and the answer length of a prompt from its features "
        "(sentence embedding, token count, task type) on an outcome matrix (JSONL, one row per prompt and model).",
    )
    p.add_argument("--matrix", required=True, type=Path, help="outcome matrix JSONL (from `energyrouter accuracy`)")
    p.add_argument("--out", required=True, type=Path, help="predictor JSON to write (keep it beside the profile)")
    p.add_argument("--encoder", default="minilm-static", help="prompt encoder: minilm-static (default) or hashing")
    p.add_argument("--min-rows", type=int, default=30, help="models with fewer rows keep their profile accuracy")
    p.add_argument(
        "--censored-at", type=int, default=None, help="generation budget of the run (default: detected; 0: none)"
    )
    p.add_argument("--json", action="store_true", help="machine-readable summary")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "replay",
        parents=[common],
        help="replay raw traces through the online learner: static prior vs online",
        description="Fit the prior on the first rows of each trace, then predict every later row before "
        "seeing it (static prior and online learner) and learn from it; print MAPE and bias of both.",
    )
    p.add_argument("--raw", action="append", required=True, metavar="NAME=PATH", help="a model's raw CSV (.csv.gz ok)")
    p.add_argument(
        "--prior-fraction", type=float, default=0.2, help="share of each trace's first rows the prior is fitted on"
    )
    p.add_argument(
        "--energy-method",
        default="nvml_poll",
        choices=["nvml_counter", "nvml_poll", "rapl", "estimate", "none"],
        help="the rows' energy method when a file has no energy_method column (default nvml_poll)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("demo", parents=[common], help="run the demo (langchain_energyrouter.demo)", add_help=False)
    p.add_argument("demo_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``energyrouter`` command; return the exit status."""
    parser = build_parser()
    given = sys.argv[1:] if argv is None else list(argv)
    try:
        if given[:1] == ["demo"]:  # everything after `demo` is the demo's own (its --help included)
            args = argparse.Namespace(command="demo", demo_args=given[1:], func=cmd_demo)
        else:
            args = parser.parse_args(given)
    except _UsageError as err:
        _say(f"{PROG}: error: {err}")
        return 1
    except SystemExit as exit_:  # --help
        return int(exit_.code or 0)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 1
    args.argv = argv
    try:
        return int(args.func(args) or 0)
    except SystemExit as exit_:  # a delegated parser (the demo's) exiting on --help or bad options
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except KeyboardInterrupt:
        _say(f"{PROG} {args.command}: interrupted; rows measured so far are kept, rerun the command to resume")
        return 130
    except Exception as err:
        if getattr(args, "debug", False):
            raise
        known = isinstance(err, (EnergyRouterError, OSError, ValueError, ImportError))
        text = " ".join(str(err).split()) or type(err).__name__
        hint = "" if known else f" ({type(err).__name__}; rerun with --debug for the traceback)"
        _say(f"{PROG} {args.command}: error: {text}{hint}")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
