"""Altair charts of the results frames, shared by the notebooks and ``tiered report``.

Each function takes a frame as written to ``data/results/`` and returns an ``alt.Chart``; the
notebooks display them, the report also renders them to PNG with vl-convert.
"""

from __future__ import annotations

import altair as alt
import polars as pl

__all__ = [
    "cache_curve_chart",
    "calibration_chart",
    "compression_chart",
    "forecast_chart",
    "frontier_chart",
    "hit_ratio_chart",
    "learning_chart",
    "phase_chart",
    "phase_means",
    "plan_chart",
    "policy_chart",
    "pool_chart",
    "rounded",
    "storage_chart",
    "traffic_chart",
]

PHASE_ORDER = ["cache", "acquire", "encode", "round_trip", "decode", "other"]


def _data(frame: pl.DataFrame) -> alt.Data:
    return alt.Data(values=frame.to_dicts())


def phase_means(phases: pl.DataFrame) -> pl.DataFrame:
    """Mean ms per call of each phase, per configuration and operation (``phases``: a
    ``tiered bench`` ``-phases`` frame; every measured call has an ``other`` phase, so its count
    is the number of calls whose phases were measured)."""
    sums = phases.filter((pl.col("stat") == "sum_s") & (pl.col("phase") != "total"))
    calls = phases.filter((pl.col("stat") == "count") & (pl.col("phase") == "other")).select(
        "config", "op", calls=pl.col("value")
    )
    return sums.join(calls, on=["config", "op"]).select(
        "config", "op", "phase", value=pl.col("value") / pl.col("calls") * 1000
    )


def phase_chart(phases: pl.DataFrame, *, title: str = "Where the time goes") -> alt.Chart:
    """Stacked bars of mean ms per call of each phase, per operation, one panel per
    configuration (``phases``: a ``tiered bench`` ``-phases`` frame): all layers off first, then
    the configurations in the order they ran, all layers on last."""
    mean = phase_means(phases)
    ran = phases["config"].unique(maintain_order=True).to_list()
    order = [c for c in ("off",) if c in ran]
    order += [c for c in ran if c not in ("off", "all")] + [c for c in ("all",) if c in ran]
    return (
        alt.Chart(_data(mean), title=title)
        .mark_bar()
        .encode(
            y=alt.Y("op:N", title=None),
            x=alt.X("value:Q", title="mean ms per call", stack="zero"),
            color=alt.Color("phase:N", sort=PHASE_ORDER),
            order=alt.Order("phase_order:Q"),
            row=alt.Row("config:N", title=None, sort=order),
            tooltip=["config:N", "op:N", "phase:N", alt.Tooltip("value:Q", format=".2f")],
        )
        .transform_calculate(
            phase_order=" + ".join(
                f"(datum.phase == '{p}') * {i}" for i, p in enumerate(PHASE_ORDER)
            )
        )
        .properties(width=420, height=140)
    )


def forecast_chart(forecast: pl.DataFrame, *, title: str = "Forecast vs actual") -> alt.LayerChart:
    """Actual requests/s, the point forecast and its 10-90 % interval (``pool_forecast``)."""
    base = alt.Chart(_data(forecast), title=title).encode(x=alt.X("hour:Q", title="hour"))
    band = base.mark_area(opacity=0.25).encode(y=alt.Y("lo:Q", title="requests/s"), y2="hi:Q")
    mean = base.mark_line(strokeDash=[4, 2]).encode(y="mean:Q")
    actual = base.mark_line(color="black").encode(y="actual:Q")
    return (band + mean + actual).properties(width=640, height=220)


def pool_chart(series: pl.DataFrame, *, title: str = "Pool size vs demand") -> alt.LayerChart:
    """Mean pool size per minute for each policy, and the demand (offered connections)."""
    base = alt.Chart(_data(series), title=title).encode(x=alt.X("minute:Q", title="minute"))
    size = base.mark_line().encode(
        y=alt.Y("size:Q", title="connections"), color=alt.Color("policy:N")
    )
    need = (
        base.transform_filter("datum.policy == 'reactive'")
        .mark_area(opacity=0.15, color="gray")
        .encode(y="offered:Q")
    )
    return (need + size).properties(width=640, height=240)


def policy_chart(summary: pl.DataFrame) -> alt.HConcatChart:
    """Late requests (waiting > 10 ms) and connection-hours per policy, per trace."""
    late = (
        alt.Chart(_data(summary), title="Requests waiting > 10 ms")
        .mark_bar()
        .encode(
            x=alt.X("late:Q", title="requests", scale=alt.Scale(type="symlog")),
            y=alt.Y("policy:N", title=None),
            row=alt.Row("trace:N", title=None),
            color="policy:N",
        )
        .properties(width=260, height=110)
    )
    hours = (
        alt.Chart(_data(summary), title="Connection-hours")
        .mark_bar()
        .encode(
            x=alt.X("connection_hours:Q", title="connection-hours"),
            y=alt.Y("policy:N", title=None),
            row=alt.Row("trace:N", title=None),
            color="policy:N",
        )
        .properties(width=260, height=110)
    )
    return alt.hconcat(late, hours)


def frontier_chart(points: pl.DataFrame, *, slo: float = 0.001) -> alt.FacetChart:
    """Late share against connection-hours, one point per setting swept, each family's
    frontier as a line, the SLO as a dashed rule, per trace (``pool_frontier``)."""
    fams = ["reactive", "hybrid", "predictive", "static_peak", "oracle"]
    shown = points.select(
        "trace", "family", "setting", "connection_hours", "on_frontier",
        late_pct=(pl.col("late_share") * 100).clip(1e-6), slo_pct=pl.lit(slo * 100),
    )  # fmt: skip
    x = alt.X("connection_hours:Q", title="connection-hours", scale=alt.Scale(zero=False))
    y = alt.Y("late_pct:Q", title="% of requests waiting > 10 ms",
              scale=alt.Scale(type="log"))  # fmt: skip
    color = alt.Color("family:N", scale=alt.Scale(domain=fams))
    base = alt.Chart()
    dots = base.mark_point(filled=True, size=40).encode(x=x, y=y, color=color,
                                                          tooltip=["setting:N"])  # fmt: skip
    lines = (
        base.transform_filter("datum.on_frontier")
        .mark_line(strokeWidth=1)
        .encode(x=x, y=y, color=color, order="connection_hours:Q")
    )
    rule = base.mark_rule(strokeDash=[4, 4], color="gray").encode(y="max(slo_pct):Q")
    return (
        alt.layer(lines, dots, rule, data=_data(shown))
        .properties(width=300, height=220)
        .facet(column=alt.Column("trace:N", title=None))
        .resolve_scale(x="independent")
        .properties(title="Late share vs connection-hours (each point a setting; dashed: SLO)")
    )


def hit_ratio_chart(sizes: pl.DataFrame) -> alt.Chart:
    """Hit ratio by episode-cache size, per eviction policy (``cache_sizes``)."""
    return (
        alt.Chart(_data(sizes), title="Hit ratio by cache size")
        .mark_line(point=True)
        .encode(
            x=alt.X("size:Q", title="episode cache entries", scale=alt.Scale(type="log")),
            y=alt.Y("hit_ratio:Q", title="hit ratio"),
            color="policy:N",
            tooltip=["policy:N", "size:Q", alt.Tooltip("hit_ratio:Q", format=".3f")],
        )
        .properties(width=420, height=240)
    )


def calibration_chart(table: pl.DataFrame) -> alt.Chart:
    """Measured vs simulated latency quantiles (ms) overall and per operation."""
    long = table.filter(pl.col("stat") != "hit_ratio").unpivot(
        index=["op", "stat"], on=["measured", "simulated"], variable_name="source"
    )
    return (
        alt.Chart(_data(long), title="Simulated vs measured latency")
        .mark_bar()
        .encode(
            x=alt.X("source:N", title=None),
            y=alt.Y("value:Q", title="ms"),
            color="source:N",
            column=alt.Column("stat:N", title=None),
            row=alt.Row("op:N", title=None),
        )
        .properties(width=60, height=70)
    )


# -- the analysis of a deployment (tiered analyze; notebook 06) ---------------------------------


def storage_chart(storage: pl.DataFrame, *, top: int = 10) -> alt.Chart:
    """Megabytes as stored per table (``storage``: the analysis's storage profile)."""
    tables = storage.filter(pl.col("column") == "*").sort("bytes", descending=True).head(top)
    tables = tables.with_columns(MB=(pl.col("bytes") / 1e6).round(2))
    return (
        alt.Chart(_data(tables), title="Stored per table (MB)")
        .mark_bar()
        .encode(
            x=alt.X("MB:Q", title="MB"),
            y=alt.Y("table:N", sort="-x", title=None),
            tooltip=["table:N", "rows:Q", "MB:Q"],
        )
    )


def compression_chart(projection: dict[str, float]) -> alt.Chart:
    """Episode payload megabytes: as stored today, raw, with tiered's zstd, with a dictionary
    (``projection``: :meth:`CompressionProjection.as_dict`)."""
    order = ["stored_bytes", "raw_bytes", "zstd_bytes", "dictionary_bytes"]
    labels = ["stored today", "raw", "tiered zstd", "tiered zstd + dictionary"]
    frame = pl.DataFrame({"form": labels, "MB": [round(projection[k] / 1e6, 2) for k in order]})
    return (
        alt.Chart(_data(frame), title="Episode payloads, projected to every row (MB)")
        .mark_bar()
        .encode(x=alt.X("MB:Q", title="MB"), y=alt.Y("form:N", sort=labels, title=None))
    )


def traffic_chart(series: pl.DataFrame, *, title: str = "Requests per hour") -> alt.Chart:
    """An hourly series (``timestamp, requests``)."""
    return (
        alt.Chart(_data(series.with_columns(pl.col("timestamp").cast(pl.Utf8))), title=title)
        .mark_line()
        .encode(
            x=alt.X("timestamp:T", title=None), y=alt.Y("requests:Q", title="requests per hour")
        )
        .properties(width=600, height=160)
    )


def plan_chart(
    series: pl.DataFrame, forecast: pl.DataFrame, *, title: str = "Traffic and the pool plan"
) -> alt.VConcatChart:
    """The traffic the plan was made on (history, then the held-out days it was checked on),
    the forecast band (median to the planned quantile) over the held-out days and the next
    week, and below it the planned pool size (``forecast``: :attr:`TrafficPlan.forecast`)."""
    cut = forecast.filter(pl.col("part") == "held-out")["timestamp"].min()
    hist = series.with_columns(
        part=pl.when(pl.col("timestamp") >= cut).then(pl.lit("held-out days (actual)"))
        .otherwise(pl.lit("history")),
        timestamp=pl.col("timestamp").cast(pl.Utf8),
    )  # fmt: skip
    band = forecast.with_columns(
        part=pl.concat_str(pl.lit("forecast, "), pl.col("part")),
        timestamp=pl.col("timestamp").cast(pl.Utf8),
    )
    x = alt.X("timestamp:T", title=None)
    lines = (
        alt.Chart(_data(hist))
        .mark_line()
        .encode(x=x, y=alt.Y("requests:Q", title="requests per hour"), color=alt.Color(
            "part:N", title=None))
    )  # fmt: skip
    area = (
        alt.Chart(_data(band))
        .mark_area(opacity=0.3)
        .encode(x=x, y="median:Q", y2="upper:Q", color=alt.Color("part:N", title=None))
    )
    top = alt.layer(area, lines, title=title).properties(width=640, height=180)
    size = (
        alt.Chart(_data(band))
        .mark_line(interpolate="step-after")
        .encode(x=x, y=alt.Y("planned_size:Q", title="planned pool size"), color="part:N")
        .properties(width=640, height=90)
    )
    return alt.vconcat(top, size).resolve_scale(x="shared", color="independent")


def cache_curve_chart(
    curve: pl.DataFrame, sizes: dict[str, int] | None = None
) -> alt.Chart | alt.LayerChart | alt.FacetChart:
    """Hit ratio by cache size per table, replayed from an access trace; ``sizes`` marks the
    recommended size of each table."""
    line = (
        alt.Chart(_data(curve), title="Hit ratio by cache size (replayed access trace)")
        .mark_line(point=True)
        .encode(
            x=alt.X("size:Q", scale=alt.Scale(type="log"), title="entries"),
            y=alt.Y("hit_ratio:Q", title="hit ratio"),
            color="table:N",
        )
    )
    if not sizes:
        return line
    marks = pl.DataFrame({"table": list(sizes), "size": list(sizes.values())})
    rule = alt.Chart(_data(marks)).mark_rule(strokeDash=[4, 3]).encode(x="size:Q", color="table:N")
    label = (
        alt.Chart(_data(marks.with_columns(text=pl.lit("recommended"))))
        .mark_text(align="left", dx=3, dy=-60)
        .encode(x="size:Q", text="text:N")
    )
    return alt.layer(line, rule, label)


def rounded(frame: pl.DataFrame, digits: int = 3) -> pl.DataFrame:
    """``frame`` with its float columns rounded for display."""
    return frame.with_columns(pl.col(pl.Float32, pl.Float64).round(digits))


def learning_chart(
    hours: pl.DataFrame, *, title: str = "A learning pool, week by week"
) -> alt.VConcatChart:
    """One series of :func:`tiered.scenarios.learning.fleet_run`'s hours (the learning
    policy): the fleet's traffic, the forecast band and the rate the plan was made for; one
    member's planned pool size and its largest target in each hour; its late share per hour."""
    frame = hours.with_columns(
        day=pl.col("hour") / 24,
        late_share=pl.when(pl.col("requests") > 0)
        .then(pl.col("late") / pl.col("requests"))
        .otherwise(None),
    )
    x = alt.X("day:Q", title="day (from cold)")
    data = _data(frame.fill_nan(None))
    band = (
        alt.Chart(data)
        .mark_area(opacity=0.25, color="#4c78a8")
        .encode(x=x, y=alt.Y("band_lo:Q", title="requests/s (fleet)"), y2="band_hi:Q")
    )
    traffic = (
        alt.Chart(data)
        .transform_fold(["rate", "planned_rate"], as_=["what", "requests_s"])
        .mark_line()
        .encode(x=x, y="requests_s:Q", color=alt.Color("what:N", title=None))
    )
    top = alt.layer(band, traffic, title=title).properties(width=640, height=170)
    sizes = (
        alt.Chart(data)
        .transform_fold(["planned_size", "target"], as_=["what", "connections"])
        .mark_line(interpolate="step-after")
        .encode(
            x=x,
            y=alt.Y("connections:Q", title="one member's pool"),
            color=alt.Color("what:N", title=None),
        )
        .properties(width=640, height=110)
    )
    late = (
        alt.Chart(data)
        .mark_bar(color="#e45756")
        .encode(x=x, y=alt.Y("late_share:Q", title="late share (member)"))
        .properties(width=640, height=70)
    )
    return alt.vconcat(top, sizes, late).resolve_scale(color="independent")
