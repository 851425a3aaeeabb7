"""Vega-Lite layers the figures share, so a band looks the same in every figure."""

from __future__ import annotations

from typing import Any


def band_layer(
    x: dict[str, Any], color: dict[str, Any], *, detail: str | None = None, opacity: float = 0.18
) -> dict[str, Any]:
    """The error band between the rows' `lo` and `hi` (trials' spread), one per `detail`."""
    encoding: dict[str, Any] = {
        "x": x,
        "y": {"field": "lo", "type": "quantitative"},
        "y2": {"field": "hi"},
        "color": color,
    }
    if detail is not None:
        encoding["detail"] = {"field": detail}
    return {"mark": {"type": "area", "opacity": opacity}, "encoding": encoding}
