"""Cost/lateness frontiers of pool-sizing settings: which settings are worth having.

A *point* is one simulated run of one setting of one policy family: what it cost
(``connection_hours``) and how late it was (``late``: requests that waited longer than the
lateness bound). Lower is better on both. The frontier of a family is its Pareto set; one
family *dominates* another when every point of the other has a point of the first that costs no
more and is no later (Pareto dominance, ties allowed). At a service-level objective (the share of
late requests at most ``slo``) the comparison that matters is between the cheapest setting of
each family that meets it.

Pure functions on a polars frame with (at least) columns ``family``, ``connection_hours``,
``late`` and ``late_share``; nothing here runs a simulation.
"""

from __future__ import annotations

import polars as pl

from tiered.errors import ConfigError

__all__ = [
    "cheapest_meeting",
    "describe_summary",
    "dominance",
    "frontier",
    "frontier_summary",
    "slo_saving",
]

COST, HARM = "connection_hours", "late"


def _check(points: pl.DataFrame, *cols: str) -> None:
    missing = [c for c in ("family", COST, HARM, *cols) if c not in points.columns]
    if missing:
        raise ConfigError(f"frontier points need columns {missing}")


def frontier(points: pl.DataFrame) -> pl.DataFrame:
    """``points`` with a boolean ``on_frontier``: no other point of the same family costs no
    more and is no later while being strictly better on one of the two."""
    _check(points)
    out = []
    for fam in points.partition_by("family", maintain_order=True):
        cost, harm = fam[COST].to_list(), fam[HARM].to_list()
        on = [
            not any(
                c2 <= c and h2 <= h and (c2 < c or h2 < h)
                for c2, h2 in zip(cost, harm, strict=True)
            )
            for c, h in zip(cost, harm, strict=True)
        ]
        out.append(fam.with_columns(on_frontier=pl.Series(on, dtype=pl.Boolean)))
    return pl.concat(out) if out else points.with_columns(on_frontier=pl.lit(False))


def dominance(points: pl.DataFrame, by: str, over: str, *, rel_tol: float = 0.0) -> float:
    """The share of ``over``'s points that some point of ``by`` matches or beats on both cost
    and lateness (1.0: ``by``'s frontier dominates ``over``'s). ``rel_tol`` lets ``by`` cost or
    be late up to that fraction more and still count (0: strict Pareto, ties allowed)."""
    _check(points)
    a = points.filter(pl.col("family") == by)
    b = points.filter(pl.col("family") == over)
    if a.is_empty() or b.is_empty():
        raise ConfigError(f"dominance needs points of both {by!r} and {over!r}")
    ac, ah = a[COST].to_list(), a[HARM].to_list()
    k = 1.0 + rel_tol
    covered = sum(
        any(c2 <= c * k and h2 <= h * k for c2, h2 in zip(ac, ah, strict=True))
        for c, h in zip(b[COST].to_list(), b[HARM].to_list(), strict=True)
    )
    return covered / b.height


def cheapest_meeting(points: pl.DataFrame, slo: float) -> pl.DataFrame:
    """Per family (and per trace, when there is a ``trace`` column), the cheapest point whose
    ``late_share`` is at most ``slo``; families with no such point are left out."""
    _check(points, "late_share")
    keys = ["trace", "family"] if "trace" in points.columns else ["family"]
    return (
        points.filter(pl.col("late_share") <= slo)
        .sort(COST, HARM)
        .group_by(keys, maintain_order=True)
        .first()
        .sort(keys)
    )


def slo_saving(points: pl.DataFrame, slo: float, by: str, over: str) -> float | None:
    """``1 - cost(by) / cost(over)`` for the cheapest point of each that meets ``slo`` (0.15: by
    needs 15 % fewer connection-hours); None when either family has no point that meets it.
    ``points`` holds one trace."""
    if "trace" in points.columns and points["trace"].n_unique() > 1:
        raise ConfigError("slo_saving compares families on one trace; filter the points first")
    return _saving(_hours_at(points, slo), by, over)


def _hours_at(points: pl.DataFrame, slo: float) -> dict[str, float]:
    """Family -> connection-hours of its cheapest point that meets ``slo`` (one trace)."""
    best = cheapest_meeting(points, slo)
    return dict(zip(best["family"].to_list(), best[COST].to_list(), strict=True))


def _saving(hours: dict[str, float], by: str, over: str) -> float | None:
    return 1.0 - hours[by] / hours[over] if by in hours and over in hours else None


def frontier_summary(
    points: pl.DataFrame, slo: float, *, by: str = "hybrid", over: str = "reactive"
) -> pl.DataFrame:
    """Per trace: the share of ``over``'s points that ``by`` matches or beats
    (:func:`dominance`), the connection-hours of each family's cheapest point that meets
    ``slo`` (null when none does), and ``by``'s saving over ``over`` there (:func:`slo_saving`),
    beside predictive's and the oracle's (what a perfect forecast would save; null without
    such points)."""
    _check(points, "late_share", "trace")
    rows = []
    for trace in sorted(points["trace"].unique().to_list()):
        p = points.filter(pl.col("trace") == trace)
        hours = _hours_at(p, slo)
        rows.append({
            "trace": trace, f"{by}_dominates": dominance(p, by, over),
            **{f"{f}_hours_at_slo": hours.get(f) for f in ("reactive", "hybrid", "predictive",
                                                            "oracle")},
            f"{by}_saving_at_slo": _saving(hours, by, over),
            "predictive_saving_at_slo": _saving(hours, "predictive", over),
            "oracle_saving_at_slo": _saving(hours, "oracle", over),
        })  # fmt: skip
    return pl.DataFrame(rows)


def describe_summary(summary: pl.DataFrame) -> str:
    """:func:`frontier_summary`'s rows as Markdown sentences (a saving is "none meets the SLO"
    where no setting of a family meets it)."""

    def pct(v: float | None) -> str:
        return "no setting meets the SLO" if v is None else f"{v:.1%}"

    return "\n".join(
        f"- {r['trace']}: hybrid matches or beats {r['hybrid_dominates']:.0%} of the reactive "
        f"points; at the SLO its saving in connection-hours over the cheapest reactive setting "
        f"is {pct(r['hybrid_saving_at_slo'])}, predictive's {pct(r['predictive_saving_at_slo'])}, "
        f"the oracle plan's {pct(r['oracle_saving_at_slo'])}"
        for r in summary.iter_rows(named=True)
    )
