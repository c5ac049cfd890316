"""``energyrouter fit --raw NAME=PATH ...``: fit a profile from raw CSVs, and the profile-writing helpers
``calibrate`` shares with it (merging into an existing profile, the summary row of a fitted model)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from langchain_energyrouter.cli.util import invocation, number_pairs, pairs, say, table, then
from langchain_energyrouter.errors import CalibrationError
from langchain_energyrouter.profile import DeviceInfo, EnergyProfile


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``fit``."""
    p = sub.add_parser(
        "fit",
        parents=[common],
        help="fit a profile from raw CSVs (also the original traces)",
        description="Fit runtime and energy (least squares and relative-error estimators with non-negative "
        "per-token slopes, with and without the interaction term, chosen by held-out bias, then MAPE) and output "
        "length (censored at the generation budget) from raw CSVs.",
    )
    p.add_argument("--raw", action="append", required=True, metavar="NAME=PATH", help="a model's raw CSV (.csv.gz ok)")
    p.add_argument(
        "--accuracy",
        action="append",
        metavar="NAME=VALUE",
        help="a model's accuracy in [0, 1]; required for each model the --out profile lacks",
    )
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from langchain_energyrouter.calibration.fitting import ESTIMATORS
    from langchain_energyrouter.calibration.loadfit import at_reference_load, with_load_model
    from langchain_energyrouter.calibration.profilefit import fit_model
    from langchain_energyrouter.calibration.rawdata import read_raw

    raws = pairs(args.raw, "--raw")
    accuracy = number_pairs(args.accuracy, "--accuracy", float)
    windows = number_pairs(args.context_window, "--context-window", int)
    model_ids = pairs(args.model_id, "--model-id")
    served_caps = number_pairs(args.max_output_tokens, "--max-output-tokens", int)
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
    read = {name: read_raw(path, warn=say) for name, path in raws.items()}
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
                say(f"{name}: no --context-window given; assuming 4096 tokens")
        say(f"{name}: fitting {len(raw.frame)} rows of {raw.path} ...")
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
            warn=say,
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
        mp = with_load_model(mp, raw.frame, seed=args.seed, warn=say)  # when the rows hold several in_flight levels
        models[name] = mp
        summary.append(fit_row(name, mp))
    profile = merge_or_new(
        existing,
        models,
        command=invocation(args),
        device=DeviceInfo(name=args.device_name, kind=args.device_kind),
        energy_method=energy_method,
        description=args.description or "Fitted with `energyrouter fit` from raw measurements.",
    )
    # Round-trip through validation so an inconsistent result fails here, not when the router loads it.
    profile = EnergyProfile.from_dict(profile.model_dump(mode="json"), origin=str(out))
    profile.save(out)
    print(table(["model", "rows", "runtime fit", "energy fit", "output length", "accuracy"], summary))
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


def merge_or_new(
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
    return existing.with_models(models).model_copy(update={"source": then(existing.source, command)})


def fit_row(name: str, mp: Any, extra: Sequence[str] = ()) -> list[str]:
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


__all__ = ["add_parser", "fit_row", "merge_or_new", "run"]
