"""The figure "instability vs k" (Frankle et al. 2020's Figure 3 kind): per level, the error
barrier of two copies rewound to the dense run's iteration k, against k, with the stability
threshold drawn as a rule and the endpoints' own spread beside it (a barrier no larger than the
spread is noise). Torch-free; rendered with vl-convert like the paper's figures
(lth_core.report.figures.render). Its data: each level summary's `instability`
(lth_core.diagnostics.instability)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from lth_core.report.layers import band_layer
from lth_core.report.sources import Source

NAME = "instability"
TITLE = "Instability vs rewinding iteration k"
_KINDS = ("error barrier", "endpoint spread")


def _number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def instability_rows(sources: Sequence[Source]) -> list[dict[str, Any]]:
    """Per experiment, level, k: the mean barrier (± its std over trials) and the mean spread
    of the endpoints' errors, in percentage points of error."""
    rows: list[dict[str, Any]] = []
    for source in sources:
        for summary in source.levels:
            measured = summary.get("instability")
            if not isinstance(measured, Mapping):
                continue
            level = int(summary["level"])
            pct = _number(summary.get("weights_remaining"))
            name = f"level {level}" + (f" ({100 * pct:.3g}%)" if pct is not None else "")
            if len(sources) > 1:
                name = f"{source.label} · {name}"
            for entry in measured.get("by_iteration") or []:
                for kind, field in zip(_KINDS, ("barrier", "endpoint_spread"), strict=True):
                    value = _number(entry.get(field))
                    if value is None:
                        continue
                    std = (_number(entry.get("barrier_std")) or 0.0) if field == "barrier" else 0.0
                    rows.append(
                        {
                            "series": name,
                            "kind": kind,
                            "level": level,
                            "k": int(entry["iteration"]),
                            "value": 100 * value,
                            "std": 100 * std,
                            "lo": 100 * (value - std),
                            "hi": 100 * (value + std),
                            "n": len(entry.get("trials") or []),
                        }
                    )
    return rows


def _threshold(sources: Sequence[Source]) -> float | None:
    for source in sources:
        for summary in source.levels:
            measured = summary.get("instability")
            if isinstance(measured, Mapping) and _number(measured.get("threshold")) is not None:
                return 100 * float(measured["threshold"])
    return None


def instability_figure(
    sources: Sequence[Source], *, title: str | list[str] | None = None
) -> dict[str, Any]:
    """The Vega-Lite description: solid lines the barrier (band: ± std over trials), dashed
    the endpoints' spread, a grey rule at the threshold."""
    rows = instability_rows(sources)
    threshold = _threshold(sources)
    x = {"field": "k", "type": "quantitative", "title": "rewinding iteration k"}
    color = {"field": "series", "type": "nominal", "title": None, "sort": None}
    y = {"field": "value", "type": "quantitative", "title": "percentage points of error"}
    layers: list[dict[str, Any]] = [
        {
            "transform": [{"filter": "datum.kind === 'error barrier' && datum.n > 1"}],
            **band_layer(x, color),
        },
        {
            "mark": {"type": "line", "strokeWidth": 2, "point": {"size": 28, "filled": True}},
            "encoding": {
                "x": x,
                "y": y,
                "color": color,
                "strokeDash": {
                    "field": "kind",
                    "type": "nominal",
                    "title": None,
                    "scale": {"domain": list(_KINDS), "range": [[1, 0], [5, 4]]},
                },
                "tooltip": [
                    {"field": "series"},
                    {"field": "kind"},
                    {"field": "k", "title": "k"},
                    {"field": "value", "title": "points", "format": ".2f"},
                    {"field": "std", "title": "± std", "format": ".2f"},
                    {"field": "n", "title": "trials"},
                ],
            },
        },
    ]
    subtitle = "solid: error barrier (bands ± std over trials) · dashed: endpoints' spread"
    if threshold is not None:
        layers.append(
            {
                "data": {"values": [{"threshold": threshold}]},
                "mark": {"type": "rule", "color": "#888", "strokeDash": [2, 2]},
                "encoding": {"y": {"field": "threshold", "type": "quantitative"}},
            }
        )
        subtitle += f" · grey: stability threshold ({threshold:g} points)"
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v6.json",
        "title": {"text": title or TITLE, "subtitle": subtitle, "anchor": "start"},
        "width": 560,
        "height": 320,
        "background": "white",
        "data": {"values": rows},
        "layer": layers,
    }
