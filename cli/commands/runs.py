"""`lth runs`: every run of every finished level across your experiments, in one sortable table.

`lth ls` shows one line per experiment and `lth status` one experiment's levels; comparing the
ticket of one experiment with the random_reinit of another, or finding the sparsest run that
kept 98% accuracy, needed a script. This reads the experiments' pages (the same filters as
`lth ls`) and prints one row per (experiment, level, run kind): weights remaining, early-stop
iteration, validation accuracy at early stop where the summary has it, test accuracy at early
stop and at the end; `--sort` orders by any column, `--csv` gives the rows to a spreadsheet.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator, Mapping
from typing import Annotated, Any

import typer

from cli.api_client import DEFAULT_URL, call
from cli.commands.common import ApiKeyOption, UrlOption, console, fail, with_client

#: Column -> (header, how to read it from a row). Numbers sort as numbers, missing ones last.
COLUMNS: dict[str, str] = {
    "id": "id",
    "name": "name",
    "level": "level",
    "run": "run",
    "weights": "weights %",
    "stop": "stop it",
    "val": "val acc %",
    "test": "test acc %",
    "final": "final acc %",
    "created": "created",
}


def register(app: typer.Typer) -> None:
    app.command("runs")(runs)


def rows_of(experiment: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """One row per run kind of each finished level: the ticket, then each control."""
    for lv in experiment.get("levels") or []:
        kinds = [("ticket", lv), *sorted((lv.get("controls") or {}).items())]
        for kind, run in kinds:
            val = run.get("early_stop_val_accuracy")
            if kind == "ticket" and val is None:
                val = lv.get("early_stop_val_accuracy")
            yield {
                "id": experiment["id"][:8],
                "name": experiment["name"],
                "level": lv["level"],
                "run": kind,
                "weights": _pct(run.get("weights_remaining", lv.get("weights_remaining"))),
                "stop": run.get("early_stop_iteration"),
                "val": _pct(val),
                "test": _pct(run.get("early_stop_test_accuracy")),
                "final": _pct(run.get("final_test_accuracy")),
                "created": str(experiment.get("created_at", ""))[:16].replace("T", " "),
            }


def _pct(x: Any) -> float | None:
    return None if not isinstance(x, int | float) else round(100 * float(x), 2)


def sort_rows(rows: list[dict[str, Any]], key: str, descending: bool) -> list[dict[str, Any]]:
    """Sorted by ``key``; rows without a value come last either way."""
    present = [r for r in rows if r[key] is not None]
    missing = [r for r in rows if r[key] is None]
    present.sort(key=lambda r: (r[key], r["id"], r["level"], r["run"]), reverse=descending)
    return present + missing


def runs(
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    sort: Annotated[
        str, typer.Option("--sort", help=f"Sort by one of: {', '.join(COLUMNS)}.")
    ] = "created",
    descending: Annotated[bool, typer.Option("--desc", help="Largest first.")] = False,
    status_filter: Annotated[str | None, typer.Option("--status", help="Only this status.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Only names containing this.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Only this model.")] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="Only with this tag.")] = None,
    limit: Annotated[int, typer.Option(help="Experiments read (newest first).")] = 200,
    as_csv: Annotated[
        bool, typer.Option("--csv", help="CSV on stdout instead of a table.")
    ] = False,
) -> None:
    """Every run of every finished level across experiments, sortable (--sort test --desc)."""
    if sort not in COLUMNS:
        raise fail(f"--sort {sort!r}: sort by one of {', '.join(COLUMNS)}")
    params: dict[str, Any] = {"limit": min(limit, 200), "offset": 0}
    for key, value in (("status", status_filter), ("name", name), ("model", model), ("tag", tag)):
        if value:
            params[key] = value

    def read(client: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        while len(items) < limit:
            page = call(
                client, "GET", "/experiments", params={**params, "offset": len(items)}
            ).json()
            items += page["items"]
            if not page["items"] or len(items) >= page["total"]:
                break
        return items[:limit]

    experiments = with_client(url, api_key, read)
    rows = sort_rows([r for e in experiments for r in rows_of(e)], sort, descending)
    if as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
        return
    console.print(_table(rows, sort, descending, len(experiments)))


def _table(rows: list[dict[str, Any]], sort: str, descending: bool, experiments: int) -> Any:
    from rich import box
    from rich.table import Table

    arrow = "↓" if descending else "↑"
    table = Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        caption=f"{len(rows)} runs of {experiments} experiments, by {COLUMNS[sort]} {arrow}",
    )
    for key, header in COLUMNS.items():
        numeric = key in ("level", "weights", "stop", "val", "test", "final")
        title = f"{header} {arrow}" if key == sort else header
        table.add_column(title, justify="right" if numeric else "left", no_wrap=key != "name")
    for r in rows:
        table.add_row(*("-" if r[k] is None else _cell(r[k]) for k in COLUMNS))
    return table


def _cell(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
