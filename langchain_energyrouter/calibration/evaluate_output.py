"""Text, JSON and plot output of an :class:`~langchain_energyrouter.calibration.evaluate.EvaluationReport`.

:func:`format_report` is what ``energyrouter evaluate`` prints, :func:`report_json` its ``--json``
document and :func:`plot_report` its ``--plot`` PNG (score against total energy per policy;
matplotlib is imported inside it).
"""

from __future__ import annotations

import json
import math
from typing import Any

from langchain_energyrouter.calibration.evaluate import ROUTER_ACCURACY_WEIGHTS, EvaluationReport
from langchain_energyrouter.calibration.length_report import LengthErrors, LengthReport


def _fmt(value: float | None, pattern: str = "{:.3f}") -> str:
    return "-" if value is None else pattern.format(value)


_SHOWN_WEIGHTS = frozenset(ROUTER_ACCURACY_WEIGHTS[1::3]) | {0.0, 1.0}
_ANNOTATED_WEIGHTS = frozenset(ROUTER_ACCURACY_WEIGHTS[1::5]) | {0.0, 1.0}


def format_report(report: EvaluationReport) -> str:
    """The human-readable report."""
    lines = [
        f"{report.source}: {len(report.models)} models, {report.n_train} training and {report.n_test} replayed prompts "
        f"(seed {report.seed}); weak (cheapest) = {report.weak}, strong (most accurate) = {report.strong}",
    ]
    if report.missing_report:
        lines.append(report.missing_report)
    lines.append(
        "replayed joules: "
        + ", ".join(f"{m} from {s}" for m, s in report.energy_source.items())
        + f"; router's predicted joules: {report.predicted_energy_source}; predictor: {report.predictor}; "
        f"normalization: {report.normalization}"
    )
    lines.append("")
    header = f"{'policy':<22} {'score':>6} {'energy_j':>12} {'strong':>7}"
    lines += [header, "-" * len(header)]
    shown = [
        p
        for p in report.policies.values()
        if p.family in ("single", "oracle")
        or (p.family == "bandit" and p.parameter in _SHOWN_WEIGHTS)
        or (p.family == "random" and p.parameter in (0.0, 0.5, 1.0))
        or (p.family.startswith("router") and p.parameter in _SHOWN_WEIGHTS)
    ]
    for p in shown:
        lines.append(f"{p.name:<22} {p.score:>6.3f} {p.energy_j:>12.1f} {p.strong_share:>7.2f}")
    lines.append("")
    header = f"{'family':<12} {'APGR':>6} {'CPT50':>6} {'CPT80':>6} {'score@E/2':>10} {'of strong':>10}"
    lines += [header, "-" * len(header)]
    for family, m in report.metrics.items():
        lines.append(
            f"{family:<12} {_fmt(m.apgr):>6} {_fmt(m.cpt50, '{:.2f}'):>6} {_fmt(m.cpt80, '{:.2f}'):>6} "
            f"{_fmt(m.score_at_half_energy):>10} {_fmt(m.score_at_half_energy_ratio, '{:.0%}'):>10}"
        )
    if report.lengths is not None:
        lines += ["", format_lengths(report.lengths)]
    for note in report.notes:
        lines.append(f"note: {note}")
    if report.timings_s:
        lines.append("time: " + ", ".join(f"{k} {v:.2f}" for k, v in report.timings_s.items()))
    return "\n".join(lines)


def _length_line(label: str, e: LengthErrors) -> str:
    return (
        f"{label:<30} {e.median_ape:>7.3f} {e.mape:>7.3f} {e.mae_tokens:>8.1f} {e.within_2x:>7.1%} "
        f"{_fmt(e.spearman, '{:.2f}'):>6} {_fmt(e.bias, '{:.3f}'):>6} {e.rows:>7}"
    )


def format_lengths(report: LengthReport) -> str:
    """The answer-length table: every predictor over all test rows, then the router's point per model."""
    lines = [
        f"answer lengths on {report.n_test_prompts} test prompts ({report.n_train_prompts} trained on; "
        f"predictor: {report.predictor}; 'predictor' is the mean the router decides on, bias = summed "
        "predicted / summed true)",
    ]
    header = (
        f"{'predictor':<30} {'medAPE':>7} {'MAPE':>7} {'MAE tok':>8} {'in 2x':>7} {'rho':>6} {'bias':>6} {'rows':>7}"
    )
    lines += [header, "-" * len(header)]
    lines += [_length_line(name, e) for name, e in report.overall.items()]
    lines += ["", "per model:"]
    for model, table in report.by_model.items():
        lines.append(model)
        for name in ("predictor", "model_task_mean", "noise_floor"):
            if name in table:
                lines.append(_length_line(f"  {name}", table[name]))
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)


def report_json(report: EvaluationReport | LengthReport) -> str:
    """The ``--json`` document (non-finite numbers as null)."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return json.dumps(clean(report.as_dict()), indent=2)


def plot_report(report: EvaluationReport, path: str) -> None:
    """Score against total energy for every policy, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10.5, 5.5))
    single_colors = ["tab:green", "tab:purple", "tab:brown", "tab:olive", "tab:pink", "black"]
    styles = {
        "router": {"color": "tab:blue", "marker": "o", "label": f"router ({report.predictor}), accuracy weight swept"},
        "router_task": {"color": "tab:cyan", "marker": ".", "label": "router, per-task means only"},
        "bandit": {"color": "tab:red", "marker": "D", "label": "online bandit (cold start), accuracy weight swept"},
        "random": {"color": "gray", "marker": "", "label": f"random mix {report.weak} / {report.strong}"},
    }
    for family, style in styles.items():
        pts = sorted(
            ((p.energy_j, p.score, p.parameter) for p in report.policies.values() if p.family == family),
            key=lambda t: t[2] if t[2] is not None else 0.0,
        )
        if not pts:
            continue
        ax.plot(
            [e for e, _s, _w in pts],
            [s for _e, s, _w in pts],
            linestyle="--" if family == "random" else "-",
            marker=style["marker"],
            color=style["color"],
            label=style["label"],
            markersize=4,
            linewidth=1.2,
        )
        if family == "router":
            labelled: set[tuple[float, float]] = set()
            for e, s, w in pts:
                if w is not None and w in _ANNOTATED_WEIGHTS and (e, s) not in labelled:
                    labelled.add((e, s))
                    ax.annotate(f"w={w:.3g}", (e, s), textcoords="offset points", xytext=(4, -10), fontsize=7)
    for p in report.policies.values():
        if p.family == "single":
            color = single_colors[report.models.index(p.name.split(":", 1)[1]) % len(single_colors)]
            ax.scatter([p.energy_j], [p.score], s=80, marker="s", zorder=3, label=p.name, color=color)
            if len(report.models) <= 6:
                ax.annotate(p.name[7:], (p.energy_j, p.score), textcoords="offset points", xytext=(6, 4), fontsize=8)
        elif p.family == "oracle":
            ax.scatter(
                [p.energy_j], [p.score], s=160, marker="*", zorder=3, label=p.name, color="gold", edgecolors="black"
            )
    strong = report.policies[f"single:{report.strong}"]
    ax.axvline(
        0.5 * strong.energy_j, color="black", linestyle=":", linewidth=0.8, label="half the strong model's energy"
    )
    m = report.metrics.get("router")
    title = f"{report.n_test} replayed prompts of {report.source.split('/')[-1]}"
    if m is not None and m.apgr is not None:
        title += f"\nrouter APGR {m.apgr:.2f}, CPT(50%) {_fmt(m.cpt50, '{:.2f}')}, CPT(80%) {_fmt(m.cpt80, '{:.2f}')}"
    ax.set_title(title, fontsize=10)
    method = ", ".join(sorted(set(report.energy_source.values())))
    ax.set_xlabel(f"total energy over the replayed prompts, J (from the {method})")
    ax.set_ylabel("mean score")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
