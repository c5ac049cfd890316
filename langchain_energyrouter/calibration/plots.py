"""PNG plots of a profile (matplotlib, Agg backend): trade-off, sensitivity, dominance, fit diagnostics.

Every plot is computed with the real :class:`~langchain_energyrouter.decide.scheduler.Scheduler`,
so it shows what the router would do, not a re-implementation of it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from langchain_energyrouter.decide.scheduler import Scheduler
from langchain_energyrouter.decide.scoring import Weights
from langchain_energyrouter.profile import EnergyProfile

_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(names: Sequence[str]) -> dict[str, str]:
    return {name: _COLORS[i % len(_COLORS)] for i, name in enumerate(names)}


def _energy_label(profile: EnergyProfile) -> str:
    return "predicted energy (J, ESTIMATED)" if profile.energy_method == "estimate" else "predicted energy (J)"


def _winner(scheduler: Scheduler, tokens: int, weights: Weights) -> str:
    return scheduler.decide(tokens, weights=weights).model


def plot_tradeoff(profile: EnergyProfile, path: Path, prompt_tokens: int) -> Path:
    """Accuracy against predicted energy and runtime for one request, with the Pareto frontier."""
    plt = _pyplot()
    names = list(profile.models)
    colors = _colors(names)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    points = {}
    for name, mp in profile.models.items():
        tout = mp.predict_output_tokens(prompt_tokens)
        pred = mp.predict(prompt_tokens, tout)
        points[name] = (pred.energy_j, pred.runtime_s, mp.accuracy, tout)
    for ax, index, xlabel in ((axes[0], 0, _energy_label(profile)), (axes[1], 1, "predicted runtime (s)")):
        for name, values in points.items():
            ax.scatter(values[index], values[2], s=90, color=colors[name], zorder=3)
            ax.annotate(
                f"{name}\n({values[3]:.0f} output tok)",
                (values[index], values[2]),
                textcoords="offset points",
                xytext=(8, 4),
                fontsize=9,
            )
        frontier = sorted(points.items(), key=lambda kv: (kv[1][index], -kv[1][2]))
        best_acc, xs, ys = -1.0, [], []
        for _name, values in frontier:
            if values[2] > best_acc:
                best_acc = values[2]
                xs.append(values[index])
                ys.append(values[2])
        if len(xs) > 1:
            ax.step(xs, ys, where="post", color="grey", linestyle="--", linewidth=1, label="Pareto frontier")
            ax.legend(loc="lower right", fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
        lo, hi = min(v[index] for v in points.values()), max(v[index] for v in points.values())
        pad = (hi - lo) * 0.35 or hi * 0.2 or 1.0
        ax.set_xlim(max(0.0, lo - pad * 0.3), hi + pad)
        acc_lo, acc_hi = min(v[2] for v in points.values()), max(v[2] for v in points.values())
        acc_pad = max((acc_hi - acc_lo) * 0.3, 0.02)
        ax.set_ylim(acc_lo - acc_pad, acc_hi + acc_pad)
    fig.suptitle(
        f"Accuracy vs cost for a {prompt_tokens}-token prompt (output length predicted per model); "
        "up and left is better",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_sensitivity(profile: EnergyProfile, path: Path, prompt_tokens: int, normalization: str) -> Path:
    """The winner as each weight sweeps 0 to 1 (the other two share the rest equally)."""
    plt = _pyplot()
    names = list(profile.models)
    colors = _colors(names)
    scheduler = Scheduler(profile, normalization=normalization)
    sweep = [i / 100 for i in range(101)]
    fig, axes = plt.subplots(3, 1, figsize=(9, 5.2), sharex=True)
    for ax, axis in zip(axes, ("accuracy", "energy", "time"), strict=True):
        winners = []
        for w in sweep:
            rest = (1 - w) / 2
            values = {"accuracy": rest, "energy": rest, "time": rest, axis: w}
            if w == 0 and rest == 0:
                continue
            winners.append(_winner(scheduler, prompt_tokens, Weights(**values)))
        start = 0
        for i in range(1, len(winners) + 1):
            if i == len(winners) or winners[i] != winners[start]:
                ax.axvspan(sweep[start], sweep[i] if i < len(sweep) else 1.0, color=colors[winners[start]], alpha=0.75)
                mid = (sweep[start] + (sweep[i] if i < len(sweep) else 1.0)) / 2
                if (sweep[i] if i < len(sweep) else 1.0) - sweep[start] > 0.08:
                    ax.text(
                        mid, 0.5, winners[start], ha="center", va="center", fontsize=9, color="white", fontweight="bold"
                    )
                start = i
        ax.set_yticks([])
        ax.set_ylabel(f"w_{axis}", rotation=0, ha="right", va="center")
        ax.set_xlim(0, 1)
    axes[-1].set_xlabel("weight of that axis (the other two weights split the remainder equally)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[n], alpha=0.75) for n in names]
    fig.legend(handles, names, loc="lower center", fontsize=9, ncol=len(names))
    fig.suptitle(
        f"Which model wins as one weight grows ({prompt_tokens}-token prompt, {normalization} normalization)",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_dominance(
    profile: EnergyProfile, path: Path, prompt_tokens: int, normalization: str, measured_max_tin: float | None = None
) -> Path:
    """Winner over the weight simplex (left) and over prompt length x energy weight (right)."""
    import math

    plt = _pyplot()
    names = list(profile.models)
    colors = _colors(names)
    scheduler = Scheduler(profile, normalization=normalization)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5.2))
    steps = 60
    xs, ys, cs = [], [], []
    for i in range(steps + 1):
        for j in range(steps + 1 - i):
            a, e = i / steps, j / steps
            t = max(0.0, 1 - a - e)
            if a + e + t <= 0:
                continue
            winner = _winner(scheduler, prompt_tokens, Weights(a, e, t))
            # barycentric -> 2D: accuracy at the top, energy bottom-left, time bottom-right
            xs.append(t + a / 2)
            ys.append(a * math.sqrt(3) / 2)
            cs.append(colors[winner])
    left.scatter(xs, ys, c=cs, s=18, marker="h", linewidths=0)
    left.plot([0, 1, 0.5, 0], [0, 0, math.sqrt(3) / 2, 0], color="black", linewidth=1)
    left.text(0.5, math.sqrt(3) / 2 + 0.03, "accuracy = 1", ha="center", fontsize=9)
    left.text(-0.02, -0.05, "energy = 1", ha="left", fontsize=9)
    left.text(1.02, -0.05, "time = 1", ha="right", fontsize=9)
    left.set_title(f"Winner over all weight mixes ({prompt_tokens}-token prompt)", fontsize=10)
    left.set_aspect("equal")
    left.axis("off")

    max_len = max(16, min(min(mp.context_window for mp in profile.models.values()) // 2, 4096))
    lengths = sorted({round(math.exp(math.log(4) + k * (math.log(max_len) - math.log(4)) / 59)) for k in range(60)})
    shares = [k / 40 for k in range(41)]
    grid = [[0] * len(lengths) for _ in shares]
    index = {n: i for i, n in enumerate(names)}
    for r, e in enumerate(shares):
        for c, tin in enumerate(lengths):
            weights = Weights(accuracy=1 - e, energy=e) if e < 1 else Weights(energy=1)
            grid[r][c] = index[_winner(scheduler, tin, weights)]
    from matplotlib.colors import ListedColormap

    cmap = ListedColormap([colors[n] for n in names])
    right.pcolormesh(lengths, shares, grid, cmap=cmap, vmin=-0.5, vmax=len(names) - 0.5, shading="nearest")
    if measured_max_tin is not None and measured_max_tin < lengths[-1]:
        right.axvline(measured_max_tin, color="black", linestyle="--", linewidth=1.2)
        right.text(
            measured_max_tin * 1.08,
            0.03,
            "longest measured prompt;\nright of it is extrapolated",
            fontsize=8,
            va="bottom",
            ha="left",
            color="black",
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"},
        )
    right.set_xscale("log")
    right.set_xlabel("prompt length (input tokens, log scale)")
    right.set_ylabel("energy weight\n(accuracy weight = 1 - energy weight, time weight = 0)", fontsize=9)
    right.set_title("Winner over prompt length and the accuracy/energy trade", fontsize=10)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[n]) for n in names]
    fig.legend(handles, names, loc="lower center", ncol=len(names), fontsize=9)
    fig.suptitle(f"Dominance regions ({normalization} normalization)", fontsize=11)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_fit_diagnostics(
    profile: EnergyProfile, path: Path, raws: Mapping[str, str], warn: Callable[[str], None]
) -> Path:
    """Predicted vs measured runtime and energy per model (log-log), with the y = x line."""
    import numpy as np
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    from langchain_energyrouter.calibration.rawdata import read_raw

    plt = _pyplot()
    fig, axes = plt.subplots(len(raws), 2, figsize=(10, 3.9 * len(raws)), squeeze=False)
    for row, (name, raw_path) in enumerate(raws.items()):
        mp = profile.model(name)
        raw = read_raw(raw_path)
        frame = raw.frame
        shown = f"{min(len(frame), 5000)} of {len(frame)} rows" if len(frame) > 5000 else f"{len(frame)} rows"
        if len(frame) > 5000:
            frame = frame.sample(5000, random_state=0)
        tin = frame["input_tokens"].to_numpy(float)
        tout = frame["output_tokens"].to_numpy(float)
        natural = frame["design_cell"].str.startswith("natural:").to_numpy()
        for col, (model, column, unit) in enumerate(
            ((mp.runtime, "runtime_seconds", "s"), (mp.energy, "energy_joules", "J"))
        ):
            ax = axes[row][col]
            measured = frame[column].to_numpy(float)
            predicted = np.maximum(np.array([model.raw(i, o) for i, o in zip(tin, tout, strict=True)]), 1e-9)
            alpha = 0.25 if len(frame) > 500 else 0.8
            ax.scatter(
                measured[~natural],
                predicted[~natural],
                s=8,
                alpha=alpha,
                label="grid / trace rows" if natural.any() else "rows",
            )
            if natural.any():
                ax.scatter(
                    measured[natural], predicted[natural], s=14, alpha=0.9, color="#d62728", label="natural prompts"
                )
            lo = float(min(measured.min(), predicted.min()))
            hi = float(max(measured.max(), predicted.max()))
            ax.plot([lo, hi], [lo, hi], color="black", linewidth=1, label="y = x")
            ax.set_xscale("log")
            ax.set_yscale("log")
            for axis in (ax.xaxis, ax.yaxis):  # plain numbers at 1-2-5 steps, no crowded minor labels
                axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
                axis.set_major_formatter(FormatStrFormatter("%g"))
                axis.set_minor_formatter(NullFormatter())
            what = "runtime" if col == 0 else "energy"
            mape = model.fit.mape_holdout if model.fit else None
            ax.set_title(
                f"{name} {what}, {shown}" + (f" (CV MAPE {mape:.1%})" if mape is not None else ""), fontsize=10
            )
            ax.set_xlabel(f"measured ({unit})")
            ax.set_ylabel(f"predicted ({unit})")
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("Fit diagnostics: predicted vs measured (points on the line are perfect)", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_plots(
    profile: EnergyProfile,
    out_dir: Path,
    *,
    raws: Mapping[str, str] | None = None,
    prompt_tokens: int = 32,
    normalization: str = "minmax",
    warn: Callable[[str], None] = print,
) -> list[Path]:
    """Write every plot the inputs allow; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    measured_max_tin = None
    if raws:
        from langchain_energyrouter.calibration.rawdata import read_raw

        measured_max_tin = max(float(read_raw(p).frame["input_tokens"].max()) for p in raws.values())
    written = [
        plot_tradeoff(profile, out_dir / "tradeoff.png", prompt_tokens),
        plot_sensitivity(profile, out_dir / "sensitivity.png", prompt_tokens, normalization),
        plot_dominance(profile, out_dir / "dominance.png", prompt_tokens, normalization, measured_max_tin),
    ]
    if raws:
        written.append(plot_fit_diagnostics(profile, out_dir / "fit_diagnostics.png", raws, warn))
    else:
        warn("fit diagnostics skipped: pass --raw NAME=PATH to plot predicted vs measured")
    return written
