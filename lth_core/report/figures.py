"""The paper's three figures as Vega-Lite descriptions: one definition for every place that draws them.

The web view renders these descriptions in the browser (vendored vega-embed: hover values,
log-scale sparsity axis), the API's plot endpoints and ``lth report``/``lth run``/``bench/``
turn the very same descriptions into PNG or SVG with vl-convert (the same Vega, compiled into
one wheel, no browser). So a figure cannot look one way on a page and another in a paper.

Torch-free (the service imports it). Input is lth_core.report.sources' `Source`: per level
the summary (the ticket's numbers at the top, each control's under ``controls``) and, for
the accuracy curves, each run's ``curve``. Experiments whose specs differ only in the seed
(or name, tags) form one group and are drawn as mean ± std; the legend names what differs.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lth_core.report.layers import band_layer
from lth_core.report.sources import (  # noqa: F401 (the figures' readers, used through here)
    CSV_FIELDS,
    REPEAT_KEYS,
    Source,
    group_sources,
    levels_csv,
    runs_of,
    source_from_run_dir,
    source_from_store,
    spec_differences,
)
from lth_core.runs import parse_run_id

FIGURES: tuple[str, ...] = (
    "accuracy_curves",
    "early_stop_iteration",
    "early_stop_accuracy",
    "method_comparison",
)
FORMATS: tuple[str, ...] = ("png", "svg", "json")
TITLES = {
    "accuracy_curves": "Test accuracy during training",
    "early_stop_iteration": "Early-stop iteration vs weights remaining",
    "early_stop_accuracy": "Test accuracy at early stop vs weights remaining",
    "method_comparison": "Every method vs weights remaining: IMP, its controls, pruning at init",
}
# The sparsities the paper's Figure 3 shows (fractions of weights remaining).
PAPER_CURVE_LEVELS = (1.0, 0.513, 0.211, 0.036)
_DASH = {"ticket": [1, 0], "random_reinit": [6, 4], "random_prune": [2, 3]}
_TICKS = (100,)
_SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# ----------------------------------------------------------------------------- data rows


def _trial_spread(summary: Mapping[str, Any], kind: str, metric: str) -> tuple[float, int] | None:
    """(std, n) over a level's own trials, where the engine reports them (``stats``)."""
    described = (summary.get("stats") or {}).get(kind, {}).get(metric)
    if isinstance(described, Mapping) and _finite(described.get("std")):
        n = described.get("n")
        return float(described["std"]), int(n) if isinstance(n, int) else 1
    return None


def sparsity_rows(sources: Sequence[Source], metric: str) -> list[dict[str, Any]]:
    """Per group, level and kind: mean ± std of ``metric`` over the group's experiments (one
    experiment with trials per level: the std over its trials)."""
    grouped = group_sources(sources)
    rows: list[dict[str, Any]] = []
    for label, members in grouped:
        by_key: dict[tuple[int, str], list[tuple[float, float, tuple[float, int] | None]]] = {}
        for source in members:
            for summary in source.levels:
                for kind, run in runs_of(summary).items():
                    value, remaining = run.get(metric), run.get("weights_remaining")
                    if _finite(value) and _finite(remaining):
                        spread = _trial_spread(summary, kind, metric)
                        by_key.setdefault((int(summary["level"]), kind), []).append(
                            (float(remaining), float(value), spread)
                        )
        for (level, kind), pairs in sorted(by_key.items()):
            mean, std = _mean_std([v for _, v, _ in pairs])
            n = len(pairs)
            if n == 1 and pairs[0][2] is not None:
                std, n = pairs[0][2]
            rows.append(
                {
                    "series": _series(label, kind, len(grouped)),
                    "kind": kind,
                    "level": level,
                    "remaining": 100 * statistics.fmean(r for r, _, _ in pairs),
                    "value": mean,
                    "std": std,
                    "lo": mean - std,
                    "hi": mean + std,
                    "n": n,
                }
            )
    return rows


def _series(group: str, kind: str, groups: int) -> str:
    return kind if groups == 1 else f"{group} · {kind}"


def curve_levels(levels: Iterable[Mapping[str, Any]]) -> list[int]:
    """The finished levels closest to the paper's Figure 3 sparsities (log distance), in order."""
    present = [
        (int(s["level"]), float(s["weights_remaining"]))
        for s in levels
        if _finite(s.get("weights_remaining")) and s["weights_remaining"] > 0
    ]
    chosen: list[int] = []
    for fraction in PAPER_CURVE_LEVELS:
        if present:
            level = min(present, key=lambda p: abs(math.log(p[1]) - math.log(fraction)))[0]
            if level not in chosen:
                chosen.append(level)
    return sorted(chosen)


def _kind_of(run: str) -> str:
    try:
        return parse_run_id(run)[0]
    except ValueError:
        return run


def curve_rows(sources: Sequence[Source], levels: Sequence[int] | None) -> list[dict[str, Any]]:
    """Test accuracy by iteration for the chosen levels (default: the paper's), mean over
    repeats: experiments of a group, an experiment's trials and its controls' draws."""
    grouped = group_sources(sources)
    rows: list[dict[str, Any]] = []
    for label, members in grouped:
        wanted = list(levels) if levels else curve_levels(members[0].levels)
        remaining = {int(s["level"]): s.get("weights_remaining") for s in members[0].levels}
        for level in wanted:
            pct = remaining.get(level)
            name = f"{100 * pct:.3g}%" if _finite(pct) else f"level {level}"
            by_kind: dict[str, dict[int, list[float]]] = {}
            for source in members:
                for run, curve in source.curves.get(level, {}).items():
                    kind = _kind_of(run)  # a trial's or a draw's run counts for its kind
                    for point in curve:
                        acc = point.get("test_accuracy")
                        if _finite(acc) and isinstance(point.get("iteration"), int):
                            by_kind.setdefault(kind, {}).setdefault(point["iteration"], []).append(
                                float(acc)
                            )
            for kind, points in sorted(by_kind.items()):
                for iteration, accs in sorted(points.items()):
                    mean, std = _mean_std(accs)
                    rows.append(
                        {
                            "series": name if len(grouped) == 1 else f"{label} · {name}",
                            "kind": kind,
                            "level": level,
                            "iteration": iteration,
                            "value": mean,
                            "std": std,
                            "lo": mean - std,
                            "hi": mean + std,
                            "n": len(accs),
                        }
                    )
    return rows


# ----------------------------------------------------------------------------- descriptions


def _dash(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    kinds = sorted({r["kind"] for r in rows}, key=lambda k: (k != "ticket", k))
    return {
        "field": "kind",
        "type": "nominal",
        "title": "run",
        "legend": None,  # named in the subtitle: a dash legend reads poorly
        "scale": {"domain": kinds, "range": [_DASH.get(k, [4, 2]) for k in kinds]},
    }


_STYLE_WORDS = {"ticket": "solid: ticket", "random_reinit": "dashed: random reinit"}


def _subtitle(rows: Sequence[Mapping[str, Any]]) -> str:
    kinds = sorted({r["kind"] for r in rows}, key=lambda k: (k != "ticket", k))
    words = {**_STYLE_WORDS, "random_prune": "dotted: random prune"}
    parts = [words.get(k, f"{k}: dash-dot") for k in kinds]
    if any(r["n"] > 1 for r in rows):
        parts.append("bands: mean ± std over seeds or trials")
    return " · ".join(parts)


def _base(name: str, title: str | list[str] | None, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "$schema": _SCHEMA,
        "title": {
            "text": title or TITLES[name],
            "subtitle": _subtitle(rows),
            "anchor": "start",
            "fontSize": 14,
            "subtitleColor": "#555",
        },
        "width": 560,
        "height": 320,
        "background": "white",
        "config": {
            "font": "DejaVu Sans, Helvetica, Arial, sans-serif",
            "axis": {"gridColor": "#e6e8eb", "labelColor": "#333", "titleColor": "#333"},
            "legend": {"labelLimit": 320, "orient": "bottom", "columns": 2, "symbolStrokeWidth": 2},
            "view": {"stroke": "#d0d4d9"},
            "range": {"category": {"scheme": "tableau10"}},
        },
        "data": {"values": rows},
    }


def _layers(x: dict[str, Any], y_title: str, y_format: str, rows: list[dict[str, Any]]) -> list:
    color = {
        "field": "series",
        "type": "nominal",
        "title": None,
        "sort": None,
        "legend": {"symbolType": "stroke", "symbolStrokeWidth": 3, "symbolOpacity": 1},
    }
    value = {"field": "value", "type": "quantitative", "title": y_title, "scale": {"zero": False}}
    tooltip = [
        {"field": "series", "title": "series"},
        {"field": "level", "title": "level"},
        {"field": x["field"], "type": "quantitative", "title": x["title"], "format": ".3~f"},
        {"field": "value", "title": y_title, "format": y_format},
        {"field": "std", "title": "± std", "format": y_format},
        {"field": "n", "title": "experiments"},
    ]
    layers: list[dict[str, Any]] = []
    if any(r["n"] > 1 for r in rows):
        layers.append(band_layer(x, color, detail="kind"))
    layers.append(
        {
            "mark": {"type": "line", "strokeWidth": 2, "point": {"size": 28, "filled": True}},
            "encoding": {
                "x": x,
                "y": value,
                "color": color,
                "strokeDash": _dash(rows),
                "tooltip": tooltip,
            },
        }
    )
    return layers


def _sparsity_ticks(levels: list[float]) -> list[float]:
    """The levels' own sparsities (the paper labels its axis so), thinned to at most ~10."""
    if not levels:
        return list(_TICKS[:1])
    step = math.ceil(len(levels) / 10)
    return levels[::step]


def sparsity_figure(
    sources: Sequence[Source], name: str, *, title: str | list[str] | None = None
) -> dict[str, Any]:
    metric = (
        "early_stop_iteration" if name == "early_stop_iteration" else "early_stop_test_accuracy"
    )
    rows = sparsity_rows(sources, metric)
    ticks = _sparsity_ticks(sorted({float(f"{r['remaining']:.3g}") for r in rows}, reverse=True))
    x = {
        "field": "remaining",
        "type": "quantitative",
        "title": "percent of weights remaining (log scale)",
        "scale": {"type": "log", "reverse": True, "nice": False},
        "axis": {"values": ticks, "format": "~g", "grid": True},
    }
    y_title, y_format = (
        ("early-stop iteration", ",.0f")
        if metric == "early_stop_iteration"
        else ("test accuracy at early stop", ".2%")
    )
    spec = _base(name, title, rows)
    spec["layer"] = _layers(x, y_title, y_format, rows)
    if metric != "early_stop_iteration":
        spec["layer"][-1]["encoding"]["y"]["axis"] = {"format": ".1%"}
    return spec


def accuracy_curves_figure(
    sources: Sequence[Source],
    *,
    levels: Sequence[int] | None = None,
    title: str | list[str] | None = None,
) -> dict[str, Any]:
    rows = curve_rows(sources, levels)
    x = {"field": "iteration", "type": "quantitative", "title": "training iteration"}
    spec = _base("accuracy_curves", title, rows)
    spec["layer"] = _layers(x, "test accuracy", ".2%", rows)
    spec["layer"][-1]["mark"]["point"] = {"size": 10, "filled": True}
    spec["layer"][-1]["encoding"]["y"]["axis"] = {"format": ".0%"}
    return spec


def figure(
    name: str,
    sources: Sequence[Source],
    *,
    levels: Sequence[int] | None = None,
    title: str | list[str] | None = None,
) -> dict[str, Any]:
    """The Vega-Lite description of figure ``name`` (one of FIGURES) for these experiments."""
    if name == "accuracy_curves":
        return accuracy_curves_figure(sources, levels=levels, title=title)
    if name in ("early_stop_iteration", "early_stop_accuracy"):
        return sparsity_figure(sources, name, title=title)
    if name == "method_comparison":
        from lth_core.report.comparison import comparison_figure

        return comparison_figure(sources, title=title or TITLES[name])
    raise ValueError(f"unknown figure {name!r}; one of {', '.join(FIGURES)}")


def has_points(spec: Mapping[str, Any]) -> bool:
    return bool(spec.get("data", {}).get("values"))


# ----------------------------------------------------------------------------- rendering


def render(spec: Mapping[str, Any], fmt: str) -> bytes:
    """PNG (2x, for papers and READMEs) or SVG of a description, without a browser."""
    import vl_convert

    if fmt == "png":
        return bytes(vl_convert.vegalite_to_png(dict(spec), scale=2))
    if fmt == "svg":
        return vl_convert.vegalite_to_svg(dict(spec)).encode()
    if fmt == "json":
        return json.dumps(spec).encode()
    raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")


def write_figures(
    sources: Sequence[Source],
    out_dir: Path,
    formats: Sequence[str] = ("png",),
    prefix: str = "",
    names: Sequence[str] | None = None,
) -> list[Path]:
    """Every figure with data (or those of `names`), in each format, as
    ``out_dir/<prefix><name>.<fmt>`` (the paper's three, method_comparison, and "instability
    vs k" where the experiments measured it). Only the figures asked for are described and
    rendered: each PNG costs ~0.1 s of a short `lth run`."""
    from lth_core.report.instability import NAME, instability_figure

    wanted = [*FIGURES, NAME] if names is None else list(names)
    unknown = [n for n in wanted if n not in (*FIGURES, NAME)]
    if unknown:
        raise ValueError(f"unknown figure {unknown[0]!r}; one of {', '.join((*FIGURES, NAME))}")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in wanted:
        # instability: with analysis.instability only (no points otherwise)
        spec = instability_figure(sources) if name == NAME else figure(name, sources)
        if not has_points(spec):
            continue
        for fmt in formats:
            path = out_dir / f"{prefix}{name}.{fmt}"
            tmp = path.with_suffix(path.suffix + ".tmp")
            tmp.write_bytes(render(spec, fmt))
            tmp.replace(path)
            written.append(path)
    return written
