"""`lth metrics` and `lth download`: what an experiment on the service produced (a level's
numbers and curves, its masks and the winning ticket)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.table import Table

from cli.api_client import DEFAULT_URL, call, download_to, resolve_id
from cli.commands.common import (
    ApiKeyOption,
    IdArgument,
    UrlOption,
    console,
    fail,
    with_client,
)

CURVE_FIELDS = ("iteration", "train_loss", "val_loss", "val_accuracy", "test_accuracy")


def register(app: typer.Typer) -> None:
    """Adds this module's commands to the `lth` app."""
    app.command("metrics")(metrics)
    app.command("download")(download)


def metrics(
    experiment_id: IdArgument,
    level: Annotated[int, typer.Argument(help="The level (0 is the dense network).")],
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    csv: Annotated[
        bool, typer.Option("--csv", help="Every run's curve as CSV, one row per evaluation.")
    ] = False,
) -> None:
    """A level's runs (ticket and controls): their numbers, or their curves with --csv."""
    data = with_client(
        url,
        api_key,
        lambda c: call(
            c, "GET", f"/experiments/{resolve_id(c, experiment_id)}/levels/{level}/metrics"
        ).json(),
    )
    if csv:
        typer.echo(metrics_csv(data), nl=False)
    else:
        console.print(metrics_table(data))


def download(
    experiment_id: IdArgument,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="File to write.")] = None,
    level: Annotated[int | None, typer.Option(help="The mask of this level.")] = None,
    ticket: Annotated[bool, typer.Option("--ticket", help="The winning ticket (default).")] = False,
    provisional: Annotated[
        bool,
        typer.Option(
            "--provisional",
            help="While the experiment runs: the current candidate (its metadata says "
            "provisional); without it a running experiment's ticket is refused as not final.",
        ),
    ] = False,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
) -> None:
    """Download a level's mask (--level K) or the winning ticket (--ticket) as safetensors."""
    if level is not None and ticket:
        raise fail("give --level K or --ticket, not both")

    def work(client: httpx.Client) -> tuple[Path, int]:
        full = resolve_id(client, experiment_id)
        if level is None:
            path, default = f"/experiments/{full}/ticket", f"{full}-ticket"
            if provisional:
                path, default = f"{path}?provisional=true", f"{default}-provisional"
        else:
            path = f"/experiments/{full}/levels/{level}/mask"
            default = f"{full}-level{level:03d}-mask"
        target = output or Path(f"{default}.safetensors")
        return target, download_to(client, path, target)

    target, size = with_client(url, api_key, work, timeout=300.0)
    console.print(f"wrote {target} ({size} bytes)")


def _ticket_first(runs: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The runs with the ticket before its controls, which it is read against."""
    return sorted(runs.items(), key=lambda kv: (kv[0] != "ticket", kv[0]))


def metrics_csv(data: Mapping[str, Any]) -> str:
    """kind, then the curve's fields, one row per evaluation of each run."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["kind", *CURVE_FIELDS])
    for kind, run in _ticket_first(data["runs"]):
        for point in run.get("curve", []):
            writer.writerow(
                [kind, *("" if point.get(f) is None else point[f] for f in CURVE_FIELDS)]
            )
    return buffer.getvalue()


def metrics_table(data: Mapping[str, Any]) -> Table:
    """A level's runs in 80 columns, the ticket first; an early stop at the run's last
    evaluation reads ``>=N`` (a lower bound, as in the level table)."""
    from rich import box

    from cli.render import pct, stop_text

    state = "" if data.get("finished") else " (not finished)"
    table = Table(
        title=f"level {data['level']}{state}",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    for column in ("run", "weights %", "stop it", "acc % @stop", "final acc %", "iters", "s"):
        table.add_column(column, no_wrap=True, justify="left" if column == "run" else "right")
    for kind, run in _ticket_first(data["runs"]):
        seconds = run.get("seconds")
        stop, _ = stop_text(run.get("early_stop_iteration"), run.get("iterations"))
        table.add_row(
            kind,
            pct(run.get("weights_remaining")),
            stop,
            pct(run.get("early_stop_test_accuracy")),
            pct(run.get("final_test_accuracy")),
            str(run.get("iterations")),
            "-" if seconds is None else f"{seconds:.1f}",
        )
    return table
