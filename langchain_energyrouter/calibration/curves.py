"""Cost-quality curve metrics of a family of routing policies (RouteLLM's definitions).

Pure functions over points ``(strong_share, mean_score, energy_j)``, one per policy of a
family (e.g. the router at each accuracy weight), plus the two anchors: always-weak (share 0)
and always-strong (share 1). "Strong" and "weak" are whatever models the caller picked
(:func:`~langchain_energyrouter.calibration.evaluate.evaluate`: the best mean score, and the
least total energy among the others).

- the quality curve ``q(x)``: the best mean score a family of policies reaches with at most a
  share ``x`` of calls to the strong model, linear between its points (randomising between two
  configurations gives every point on the segment), anchored at always-weak (0) and
  always-strong (1);
- PGR(x) = (q(x) - weak) / (strong - weak); **APGR** = the area under PGR over x in [0, 1]
  (random mixing: 0.5 exactly);
- **CPT(50%)**, **CPT(80%)**: the least share of strong calls with PGR >= 0.5 / 0.8;
- **score at half energy**: the best mean score with total energy at most half the strong
  model's, on the same kind of curve over energy (anchored at both models), and that score
  as a fraction of the strong model's.

Metrics that need a score gap are None when the strong model scores no better than the weak one.
Standard library only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise


@dataclass(frozen=True)
class CurveMetrics:
    """RouteLLM-style metrics of one family of policies (see the module docstring)."""

    apgr: float | None
    cpt50: float | None
    cpt80: float | None
    score_at_half_energy: float | None
    score_at_half_energy_ratio: float | None
    """``score_at_half_energy`` over the strong model's mean score."""

    def as_dict(self) -> dict[str, float | None]:
        return {
            "apgr": self.apgr,
            "cpt50": self.cpt50,
            "cpt80": self.cpt80,
            "score_at_half_energy": self.score_at_half_energy,
            "score_at_half_energy_ratio": self.score_at_half_energy_ratio,
        }


def _frontier(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points sorted by cost, keeping only those that raise the best score so far."""
    out: list[tuple[float, float]] = []
    for cost, score in sorted(points, key=lambda p: (p[0], -p[1])):
        if not out or score > out[-1][1] + 1e-12:
            out.append((cost, score))
    return out


def _value_at(front: Sequence[tuple[float, float]], cost: float) -> float | None:
    """The frontier's score at ``cost`` (linear between points, flat after the last); None below the first."""
    if not front or cost < front[0][0] - 1e-12:
        return None
    for (c0, s0), (c1, s1) in pairwise(front):
        if cost <= c1:
            return s0 if c1 - c0 <= 1e-15 else s0 + (s1 - s0) * (cost - c0) / (c1 - c0)
    return front[-1][1]


def _first_cost_reaching(front: Sequence[tuple[float, float]], target: float) -> float | None:
    if not front:
        return None
    if front[0][1] >= target - 1e-12:
        return front[0][0]
    for (c0, s0), (c1, s1) in pairwise(front):
        if s1 >= target - 1e-12:
            return c0 + (c1 - c0) * (target - s0) / (s1 - s0)
    return None


def curve_metrics(
    points: Sequence[tuple[float, float, float]],
    weak: tuple[float, float, float],
    strong: tuple[float, float, float],
) -> CurveMetrics:
    """APGR, CPT(50%), CPT(80%) and the score at half the strong model's energy of one family.

    Args:
        points: ``(strong_share, mean_score, energy_j)`` of each policy of the family.
        weak: the same triple for always-weak (share 0).
        strong: the same triple for always-strong (share 1).

    A family's curve is anchored at ``weak`` and ``strong``. Metrics that need a gap are None
    when the strong model scores no better than the weak one.
    """
    all_points = [*points, weak, strong]
    gap = strong[1] - weak[1]
    share_front = _frontier([(min(max(x, 0.0), 1.0), s) for x, s, _e in all_points])
    apgr = cpt50 = cpt80 = None
    if gap > 1e-12:
        area = 0.0
        for (x0, s0), (x1, s1) in pairwise(share_front):
            area += (x1 - x0) * (s0 + s1) / 2
        area += (1.0 - share_front[-1][0]) * share_front[-1][1]
        apgr = (area - weak[1]) / gap
        cpt50 = _first_cost_reaching(share_front, weak[1] + 0.5 * gap)
        cpt80 = _first_cost_reaching(share_front, weak[1] + 0.8 * gap)
    energy_front = _frontier([(e, s) for _x, s, e in all_points])
    half = _value_at(energy_front, 0.5 * strong[2])
    ratio = None if half is None or strong[1] <= 0 else half / strong[1]
    return CurveMetrics(apgr, cpt50, cpt80, half, ratio)
