"""`lth report`: the paper's figures (PNG and SVG) and a self-contained HTML report.

From the service (``lth report ID [ID ...]``: the figures the API describes, so they are the
web view's) or from `lth run` folders (``lth report --local RUN_DIR ...``, no server). Several
experiments are overlaid; those differing only in the seed are drawn as mean ± std. The HTML
file carries the vendored Vega libraries inline, so it opens offline with hover values.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.api_client import DEFAULT_URL, ClientError, call, connect
from cli.commands.common import ApiKeyOption, UrlOption, fail

REPORT_HELP = """Write the paper's three figures (PNG, SVG) and report.html for experiments.

`lth report ID [ID ...] -o DIR` reads them from the service (--url, LTH_API_KEY);
`lth report --local RUN_DIR [RUN_DIR ...] -o DIR` reads `lth run` output folders. Several
experiments are overlaid in one set of figures; repeats that differ only in the seed become
mean ± std bands, and the legend names the spec values that differ.
"""

_VENDOR = ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js")


def register(app: typer.Typer) -> None:
    """Adds `lth report`, its help from REPORT_HELP."""
    app.command("report", help=REPORT_HELP)(report)


def report(
    targets: Annotated[
        list[str], typer.Argument(help="Experiment ids, or run folders with --local.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write into.")] = Path(
        "report"
    ),
    local: Annotated[
        bool, typer.Option("--local", help="TARGETS are `lth run` folders: no server needed.")
    ] = False,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
) -> None:
    """`lth report` (help: REPORT_HELP). Run folders and the service yield the same figure
    specs, images and level tables, so one HTML writer serves both."""
    if local:
        specs, tables, images = _local(targets)
    else:
        try:
            specs, tables, images = _remote(targets, url, api_key)
        except ClientError as exc:
            raise fail(str(exc)) from None
    out.mkdir(parents=True, exist_ok=True)
    for name, data in images.items():
        (out / name).write_bytes(data)
    title = tables[0]["name"] if len(tables) == 1 else f"{len(tables)} experiments compared"
    (out / "report.html").write_text(html_report(title, specs, tables))
    typer.echo(f"wrote {out / 'report.html'} and {len(images)} figure files")


def _local(dirs: Sequence[str]) -> tuple[dict, list, dict]:
    from lth_core.report import figures

    sources = []
    for d in dirs:
        path = Path(d)
        if not (path / "spec.json").is_file():
            raise fail(f"{path} is not an `lth run` folder (no spec.json)")
        sources.append(figures.source_from_run_dir(path))
    specs = {name: figures.figure(name, sources) for name in figures.FIGURES}
    images = {
        f"{name}.{fmt}": figures.render(spec, fmt)
        for name, spec in specs.items()
        for fmt in ("png", "svg")
    }
    from lth_core.results.verification import decision

    tables = [
        {
            "name": s.label,
            "id": "",
            "spec": s.spec,
            "levels": s.levels,
            "ticket": s.ticket_level,
            "decision": decision(s.spec, s.levels),
        }
        for s in sources
    ]
    return specs, tables, images


def _remote(ids: Sequence[str], url: str, api_key: str | None) -> tuple[dict, list, dict]:
    from lth_core.report.figures import FIGURES

    with connect(url, api_key, timeout=120) as client:
        tables = []
        for experiment_id in ids:
            body = call(client, "GET", f"/experiments/{experiment_id}").json()
            ticket = body.get("ticket") or {}
            tables.append(
                {
                    "name": body["name"],
                    "id": body["id"],
                    "spec": body["spec"],
                    "levels": body["levels"],
                    "ticket": ticket.get("level"),
                    "decision": body.get("ticket_decision"),
                }
            )
        if len(ids) == 1:
            base, query = f"/experiments/{tables[0]['id']}/plots", ""
        else:
            base, query = "/compare/plots", "?ids=" + ",".join(t["id"] for t in tables)
        specs, images = {}, {}
        for name in FIGURES:
            specs[name] = call(client, "GET", f"{base}/{name}.json{query}").json()
            for fmt in ("png", "svg"):
                images[f"{name}.{fmt}"] = call(client, "GET", f"{base}/{name}.{fmt}{query}").content
    return specs, tables, images


# ----------------------------------------------------------------------------- HTML


def _vendor_js() -> str:
    import service.web

    vendor = Path(service.web.__file__).resolve().parent / "static" / "vendor"
    code = "\n".join((vendor / name).read_text() for name in _VENDOR)
    return code.replace("</script", "<\\/script")  # must not close the inline element


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element (no '</script>' or '<!--' can close it early)."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _pct(x: Any, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}%" if isinstance(x, int | float) else "–"


def _level_table(table: Mapping[str, Any]) -> str:
    from lth_core.report.figures import runs_of

    kinds = ["ticket", *table["spec"].get("controls", [])]
    head = "".join(
        f"<th>{html.escape(k)} early stop</th><th>{html.escape(k)} val accuracy</th>"
        f"<th>{html.escape(k)} test accuracy</th>"
        for k in kinds
    )
    decision = table.get("decision") or {}
    records = {r["level"]: r for r in decision.get("levels") or []}
    rows = []
    for summary in sorted(table["levels"], key=lambda s: s["level"]):
        runs = runs_of(summary)
        # The ticket is a pruned level: the dense network (level 0) never gets the star.
        mark = "★ " if summary["level"] == table["ticket"] and summary["level"] > 0 else ""
        cells = "".join(
            f"<td>{runs[k].get('early_stop_iteration', '–')}</td>"
            f"<td>{_pct(runs[k].get('early_stop_val_accuracy'), 2)}</td>"
            f"<td>{_pct(runs[k].get('early_stop_test_accuracy'), 2)}</td>"
            if k in runs
            else "<td>–</td><td>–</td><td>–</td>"
            for k in kinds
        )
        record = records.get(summary["level"], {})
        verdict = "dense" if summary["level"] == 0 else record.get("verdict") or "–"
        why = html.escape("; ".join(record.get("reasons") or []))
        cls = ' class="ticket"' if mark else ""
        rows.append(
            f"<tr{cls}><td>{mark}{summary['level']}</td>"
            f"<td>{_pct(summary.get('weights_remaining'))}</td>{cells}"
            f'<td title="{why}">{html.escape(verdict)}</td></tr>'
        )
    reason = html.escape(str(decision.get("reason") or ""))
    return (
        f"<h2>{html.escape(table['name'])} <small>{html.escape(table['id'])}</small></h2>"
        f"<p>{reason}</p>"
        f"<table><tr><th>level</th><th>weights</th>{head}<th>verdict</th></tr>{''.join(rows)}</table>"
        f"<details><summary>spec</summary><pre>{html.escape(json.dumps(table['spec'], indent=2))}</pre></details>"
    )


def html_report(title: str, specs: Mapping[str, Any], tables: Sequence[Mapping[str, Any]]) -> str:
    """One HTML file: interactive figures (Vega inline, no network), level tables, specs."""
    figures_html = "".join(f'<div class="fig" id="fig-{name}"></div>' for name in specs)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)} · lth report</title>
<style>
body {{ font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; color: #1f2933; margin: 24px auto; max-width: 1300px; padding: 0 16px; }}
table {{ border-collapse: collapse; margin: 8px 0; }} td, th {{ padding: 4px 10px; border-bottom: 1px solid #e3e7eb; text-align: right; }}
tr.ticket td {{ background: #fff8e6; }} small {{ color: #66727f; font-weight: normal; }}
.figs {{ display: flex; flex-wrap: wrap; gap: 16px; }} pre {{ background: #f3f5f7; padding: 10px; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p><small>The paper's figures (Frankle &amp; Carbin 2019); hover a point for its values. Written by <code>lth report</code>.</small></p>
<div class="figs">{figures_html}</div>
{"".join(_level_table(t) for t in tables)}
<script>{_vendor_js()}</script>
<script type="application/json" id="specs">{_script_json(dict(specs))}</script>
<script>
const specs = JSON.parse(document.getElementById("specs").textContent);
for (const [name, spec] of Object.entries(specs)) {{
  vegaEmbed("#fig-" + name, spec, {{renderer: "svg", actions: {{export: true, source: false, compiled: false, editor: false}}}});
}}
</script>
</body></html>
"""
