"""The PNG of ``energyrouter report LOG --plot out.png`` (matplotlib, Agg backend).

Four panels over the log's time, from :func:`~langchain_energyrouter.calibration.decision_report.build_report`
and the calls themselves: the share of calls each model served, the prediction error (medAPE) of answer
length, runtime and energy, their bias (summed predictions over summed measurements), and cumulative energy,
measured and predicted, against the predicted counterfactuals "always the most accurate" and "always the
cheapest", with explored calls marked.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import accumulate
from pathlib import Path
from typing import Any

from langchain_energyrouter.calibration.decision_report import QUANTITIES, DecisionLogData
from langchain_energyrouter.calibration.plots import _colors, _pyplot

__all__ = ["plot_report"]

_QUANTITY_COLORS = {"length": "#1f77b4", "runtime": "#2ca02c", "energy": "#d62728"}
_QUANTITY_LABELS = {"length": "answer length (tokens)", "runtime": "runtime (s)", "energy": "energy (J)"}


def plot_report(data: DecisionLogData, report: Mapping[str, Any], path: Path) -> Path:
    """Write the report's figure to ``path`` (a PNG) and return it."""
    plt = _pyplot()
    bins = report["bins"]
    mids = [(b["start_min"] + b["end_min"]) / 2 for b in bins]
    widths = [max(b["end_min"] - b["start_min"], report["duration_min"] / max(len(bins), 1) * 0.8) for b in bins]
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.4))
    (share_ax, error_ax), (bias_ax, energy_ax) = axes

    names = list(report["models"])
    colors = _colors(names)
    bottom = [0.0] * len(bins)
    for name in names:
        shares = [100 * b["share"][name] for b in bins]
        share_ax.bar(mids, shares, width=widths, bottom=bottom, color=colors[name], label=name, edgecolor="white")
        bottom = [lo + s for lo, s in zip(bottom, shares, strict=True)]
    for mid, b in zip(mids, bins, strict=True):
        share_ax.text(mid, 101, f"n={b['calls']}", ha="center", va="bottom", fontsize=8, color="#444")
    share_ax.set_ylim(0, 128)
    share_ax.set_yticks(range(0, 101, 20))
    share_ax.set_ylabel("share of calls (%)")
    share_ax.set_title("Which model served the calls (n = calls in the bin)")
    share_ax.legend(loc="upper center", ncol=min(len(names), 4), fontsize=9, framealpha=0.9)

    for quantity in QUANTITIES:
        medapes = [_percent(b["error"][quantity]["medape"]) for b in bins]
        biases = [b["error"][quantity]["bias"] for b in bins]
        overall = report["error"][quantity]
        style = {"color": _QUANTITY_COLORS[quantity], "marker": "o", "linewidth": 1.8}
        label = f"{_QUANTITY_LABELS[quantity]}: all {_fmt_pct(overall['medape'])}"
        error_ax.plot(mids, medapes, label=label, **style)
        bias_ax.plot(mids, biases, label=f"{_QUANTITY_LABELS[quantity]}: all {_fmt(overall['bias'])}", **style)
    error_ax.set_ylabel("median absolute % error")
    error_ax.set_ylim(bottom=0)
    error_ax.set_title("Prediction error of the serving model (lower is better)")
    error_ax.legend(fontsize=9, framealpha=0.9)
    bias_ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    bias_ax.set_yscale("log")
    _plain_log_ticks(bias_ax, [b["error"][q]["bias"] for b in bins for q in QUANTITIES])
    bias_ax.set_ylabel("summed predicted / summed measured")
    bias_ax.set_title("Bias (1 = unbiased; above: predicted more than measured)")
    bias_ax.legend(fontsize=9, framealpha=0.9, loc="best")

    _energy_panel(energy_ax, data, report)
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        ax.set_xlabel("minutes since the first call")
    methods = ", ".join(f"{m} ({n} calls)" for m, n in report["energy_methods"].items())
    fig.suptitle(
        f"Decision log: {report['calls']} calls over {report['duration_min']:.1f} min; energy method: {methods}",
        fontsize=12,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _energy_panel(ax: Any, data: DecisionLogData, report: Mapping[str, Any]) -> None:
    calls = data.calls
    start = calls[0].time_unix_s
    minutes = [(row.time_unix_s - start) / 60 for row in calls]
    series = (
        ("routed, measured", [row.measured["energy"] or 0.0 for row in calls], "black", "-"),
        ("routed, predicted", [row.predicted["energy"] or 0.0 for row in calls], "black", ":"),
        ("always most accurate (predicted)", [row.most_accurate_energy_j or 0.0 for row in calls], "#d62728", "--"),
        ("always cheapest (predicted)", [row.cheapest_energy_j or 0.0 for row in calls], "#2ca02c", "--"),
    )
    for label, values, color, style in series:
        total = list(accumulate(values))
        ax.plot(minutes, total, color=color, linestyle=style, linewidth=1.8, label=f"{label}: {total[-1]:,.0f} J")
    explored = [m for m, row in zip(minutes, calls, strict=True) if row.explored]
    if explored:
        share = report["exploration"]["share"]
        ax.plot(
            explored, [0.0] * len(explored), "|", color="#9467bd", markersize=12, markeredgewidth=1.5,
            label=f"explored call ({len(explored)}, {100 * share:.0f}%)",
        )  # fmt: skip
    ax.set_ylabel("cumulative energy (J)")
    ax.set_ylim(bottom=0)
    ax.set_title("Cumulative energy: routed vs always one model (broken lines: predicted)")
    ax.legend(fontsize=9, loc="upper left", framealpha=0.9)


def _plain_log_ticks(ax: Any, values: list[float | None]) -> None:
    """Ticks a reader reads as numbers (0.5, 1, 2), not powers of ten, spanning the values and 1."""
    from matplotlib.ticker import FixedLocator, NullLocator

    present = [v for v in values if v is not None and v > 0] + [1.0]
    low, high = min(present), max(present)
    ticks = [t for t in (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1, 1.5, 2, 3, 5, 10, 20) if low / 1.5 <= t <= high * 1.5]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_yticklabels([f"{t:g}" for t in ticks])
    ax.set_ylim(min(ticks[0], low) / 1.1, max(ticks[-1], high) * 1.1)


def _percent(value: float | None) -> float | None:
    return None if value is None else 100 * value


def _fmt_pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
