"""The method-comparison figure: every method of one or more experiments against weights
remaining, accuracy at early stop above and the early-stop iteration below, one curve per
method (the IMP ticket, random_reinit, random_prune, each pruning-at-initialization method and
its ablations), error bands from the trials.

Frankle et al. 2021's question ("does IMP beat pruning at initialization, and does the
method find more than per-layer sparsities?") is read off it: where the ticket's curve lies
above the methods', and where a method's `.shuffle` curve lies on the method's own. Compared
experiments (the API's /compare: e.g. an lr_rewind or finetune experiment beside a reset-to-
init one) add their curves as `<group> · <method>`. Torch-free, built from the rows the other
sparsity figures use (lth_core.report.figures.sparsity_rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lth_core.report.layers import band_layer
from lth_core.report.sources import Source


def _dash(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Solid: the ticket and the plain pruning-at-init methods; dashed: the random controls;
    dotted: an ablation (`snip.shuffle`), so it reads against its own method's color."""
    kinds = sorted({r["kind"] for r in rows}, key=lambda k: (k != "ticket", k))

    def dash(kind: str) -> list[int]:
        if "." in kind:
            return [2, 2]
        return [6, 3] if kind.startswith("random_") else [1, 0]

    return {
        "field": "kind",
        "type": "nominal",
        "legend": None,
        "scale": {"domain": kinds, "range": [dash(k) for k in kinds]},
    }


def _panel(rows: list[dict[str, Any]], y_title: str, y_format: str, ticks: list[float]) -> dict:
    x = {
        "field": "remaining",
        "type": "quantitative",
        "title": "percent of weights remaining (log scale)",
        "scale": {"type": "log", "reverse": True, "nice": False},
        "axis": {"values": ticks, "format": "~g", "grid": True},
    }
    color = {
        "field": "series",
        "type": "nominal",
        "title": None,
        "sort": None,
        "legend": {"symbolType": "stroke", "symbolStrokeWidth": 3, "symbolOpacity": 1},
    }
    band = band_layer(x, color, detail="series", opacity=0.15)
    line = {
        "mark": {"type": "line", "strokeWidth": 2, "point": {"size": 24, "filled": True}},
        "encoding": {
            "x": x,
            "y": {
                "field": "value",
                "type": "quantitative",
                "title": y_title,
                "scale": {"zero": False},
                "axis": {"format": y_format},
            },
            "color": color,
            "strokeDash": _dash(rows),
            "tooltip": [
                {"field": "series", "title": "method"},
                {"field": "level", "title": "level"},
                {"field": "remaining", "title": "weights %", "format": ".3~f"},
                {"field": "value", "title": y_title, "format": y_format},
                {"field": "std", "title": "± std", "format": y_format},
                {"field": "n", "title": "runs"},
            ],
        },
    }
    layers = [band, line] if any(r["n"] > 1 for r in rows) else [line]
    return {"data": {"values": rows}, "layer": layers, "width": 560, "height": 240}


def comparison_figure(sources: Sequence[Source], *, title: str | list[str]) -> dict[str, Any]:
    """The Vega-Lite description: two panels sharing the sparsity axis and the colors."""
    from lth_core.report.figures import _base, _sparsity_ticks, sparsity_rows

    accuracy = sparsity_rows(sources, "early_stop_test_accuracy")
    iteration = sparsity_rows(sources, "early_stop_iteration")
    ticks = _sparsity_ticks(
        sorted({float(f"{r['remaining']:.3g}") for r in accuracy}, reverse=True)
    )
    spec = _base("method_comparison", title, accuracy)
    spec["title"]["subtitle"] = (
        "one curve per method · dashed: random controls · dotted: ablations · "
        "bands: mean ± std over trials and draws"
    )
    del spec["width"], spec["height"]
    spec["config"]["legend"]["columns"] = 4
    spec["config"]["range"] = {"category": {"scheme": "tableau20"}}
    spec["vconcat"] = [
        _panel(accuracy, "test accuracy at early stop", ".1%", ticks),
        _panel(iteration, "early-stop iteration", ",.0f", ticks),
    ]
    spec["resolve"] = {"scale": {"color": "shared", "strokeDash": "shared"}}
    return spec
