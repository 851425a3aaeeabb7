"""`lth submit`, `status`, `ls`, `cancel`, `resume`, `delete`: an experiment's life on the service.

They speak only HTTP (through cli.api_client) and import nothing heavy, so they work from any
machine that can reach the API. Every command takes `--url` (or LTH_URL) and exits non-zero
with the server's error message when a request fails.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.table import Table

from cli.api_client import (
    DEFAULT_URL,
    ClientError,
    SpecRejected,
    call,
    connect,
    estimate_spec,
    problem_lines,
    resolve_id,
    submit_spec,
)
from cli.commands.common import (
    ApiKeyOption,
    IdArgument,
    UrlOption,
    console,
    fail,
    with_client,
)
from cli.render import cost_lines, level_table, plural, timing_text
from cli.watch import wait_for
from store.status import ACTIVE_STATUSES, Status

WaitOption = Annotated[bool, typer.Option("--wait", help="Follow it until it finishes.")]
IntervalOption = Annotated[float, typer.Option(help="Seconds between polls.")]


def register(app: typer.Typer) -> None:
    """Adds this module's commands to the `lth` app."""
    app.command("submit")(submit)
    app.command("status")(status)
    app.command("ls")(ls)
    app.command("cancel")(cancel)
    app.command("resume")(resume)
    app.command("delete")(delete)


def submit(
    spec_file: Annotated[Path, typer.Argument(help="Experiment spec (JSON).", exists=True)],
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    wait: WaitOption = False,
    interval: IntervalOption = 1.0,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Reuse to make a repeated submit return the same one.")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a spec field, e.g. --set training.iterations=2000."),
    ] = None,
    again: Annotated[
        bool,
        typer.Option(
            "--again",
            help="Submit even if an experiment of exactly this spec is queued, running or "
            "succeeded (the same spec gives the same results).",
        ),
    ] = False,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes",
            "-y",
            help="Do not ask before submitting a spec estimated above the server's "
            "LTH_COST_NOTE_SECONDS (for scripts).",
        ),
    ] = False,
) -> None:
    """Submit an experiment spec; with --wait, show progress, ETA and the final table.
    A spec estimated above the server's note limit (LTH_COST_NOTE_SECONDS) is shown and
    asked about first, unless --yes."""
    from cli.commands.run import apply_overrides, blame

    try:
        spec = json.loads(spec_file.read_text())
    except ValueError as exc:
        raise fail(f"{spec_file} is not JSON: {exc}") from None
    if not isinstance(spec, dict):
        raise fail(f"{spec_file} must hold a JSON object (the spec)")
    spec = apply_overrides(spec, set_ or [])
    try:
        with connect(url, api_key) as client:
            shown = [] if yes else confirm_cost(client, spec)
            experiment = submit_spec(client, spec, idempotency_key or uuid.uuid4().hex, again=again)
            console.print(f"submitted {experiment['id']} ({experiment['status']})")
            print_notes(experiment, shown)
            if not wait:
                return
            try:
                experiment = wait_for(client, experiment["id"], interval, console)
            except KeyboardInterrupt:
                console.print(f"stopped waiting; follow with `lth status {experiment['id']}`")
                raise typer.Exit(130) from None
    except SpecRejected as exc:
        tag = lambda loc: blame(loc, spec_file, set_ or [])  # noqa: E731
        raise fail(problem_lines(None, exc.problems, tag)) from None
    except ClientError as exc:
        raise fail(str(exc)) from None
    show_final(experiment)


def status(
    experiment_id: IdArgument,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON.")] = False,
) -> None:
    """Show an experiment: status, progress with elapsed time, speed and ETA, finished
    levels and the ticket."""
    experiment = with_client(
        url,
        api_key,
        lambda c: call(c, "GET", f"/experiments/{resolve_id(c, experiment_id)}").json(),
    )
    if as_json:
        console.print_json(data=experiment)
    else:
        show_experiment(experiment)


def ls(
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    status_filter: Annotated[str | None, typer.Option("--status", help="Only this status.")] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Only names containing this (any case).")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="Only this model.")] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="Only with this tag.")] = None,
    limit: Annotated[int, typer.Option(help="How many.")] = 20,
    offset: Annotated[int, typer.Option(help="Skip this many (newest first).")] = 0,
) -> None:
    """List experiments, newest first: short id, name, status, levels, the ticket's
    weights remaining (and level) and accuracy."""
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    for key, value in (("status", status_filter), ("name", name), ("model", model)):
        if value:
            params[key] = value
    if tag:
        params["tag"] = tag
    page = with_client(url, api_key, lambda c: call(c, "GET", "/experiments", params=params).json())
    console.print(ls_table(page))


def cancel(
    experiment_id: IdArgument,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
) -> None:
    """Cancel: a queued experiment never starts; a running one stops at its next evaluation."""
    e = with_client(
        url,
        api_key,
        lambda c: call(c, "POST", f"/experiments/{resolve_id(c, experiment_id)}/cancel").json(),
    )
    pending = " (stops at its next evaluation)" if e["status"] == Status.RUNNING else ""
    console.print(f"{e['id']}: {e['status']}{pending}")


def resume(
    experiment_id: IdArgument,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    wait: WaitOption = False,
    interval: IntervalOption = 1.0,
) -> None:
    """Continue a cancelled or failed experiment from its finished levels (nothing that
    finished is trained again)."""

    def work(client: httpx.Client) -> dict[str, Any]:
        full = resolve_id(client, experiment_id)
        e = call(client, "POST", f"/experiments/{full}/resume").json()
        done = e["progress"]["levels_finished"]
        console.print(
            f"{e['id']}: {e['status']}, continuing after {done} finished "
            f"level{'s' if done != 1 else ''} of {e['progress']['levels']}",
            soft_wrap=True,
        )
        return wait_for(client, full, interval, console) if wait else e

    experiment = with_client(url, api_key, work)
    if wait:
        show_final(experiment)


def delete(
    experiment_id: IdArgument,
    url: UrlOption = DEFAULT_URL,
    api_key: ApiKeyOption = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (for scripts).")
    ] = False,
) -> None:
    """Delete a succeeded, failed or cancelled experiment and its artifacts (cancel a
    running one first). Asks first, naming what goes, unless --yes."""

    def work(client: httpx.Client) -> str | None:
        e = call(client, "GET", f"/experiments/{resolve_id(client, experiment_id)}").json()
        if not yes:
            done = e["progress"]["levels_finished"]
            question = (
                f"delete {e['id'][:8]} ({e['name']}, {e['status']}, {plural(done, 'level')} "
                "finished) and all its files?"
            )
            if not typer.confirm(question, default=False):
                return None
        call(client, "DELETE", f"/experiments/{e['id']}")
        return str(e["id"])

    deleted = with_client(url, api_key, work)
    if deleted is None:
        console.print("nothing deleted")
        raise typer.Exit(1)
    console.print(f"deleted {deleted}")


def print_notes(experiment: Mapping[str, Any], shown: Sequence[str] = ()) -> None:
    """The notes the API attached to the spec (e.g. a short budget's adapted defaults), which a
    user should see wherever the experiment is shown (those in ``shown`` were, just now)."""
    for note in experiment.get("notes") or []:
        if note not in shown:
            console.print(f"[yellow]note:[/yellow] {note}", highlight=False)


def stdin_is_terminal() -> bool:
    """Whether a question can be asked: a script's stdin (a pipe, /dev/null) is no answer."""
    return sys.stdin.isatty()


def confirm_cost(client: httpx.Client, spec: Mapping[str, Any]) -> list[str]:
    """Asks the server what the spec would cost; above its note limit, shows the notes and
    asks (default no), ending the command when not confirmed or when there is no terminal to
    ask on. Returns the notes shown, so that the submit's answer does not repeat them."""
    found = estimate_spec(client, spec)
    if found is None or not found["above_note_limit"]:
        return []
    shown = list(found["notes"])
    print_notes(found)
    if not stdin_is_terminal():
        raise fail(
            "not submitted: its estimate is above the server's note limit "
            f"(LTH_COST_NOTE_SECONDS={found['note_limit_seconds']:g}) and there is no terminal "
            "to ask on; pass --yes (-y) to submit it anyway"
        )
    if not typer.confirm("submit it anyway?", default=False):
        console.print("nothing submitted")
        raise typer.Exit(1)
    return shown


def show_final(experiment: Mapping[str, Any]) -> None:
    """What `--wait` ends with: the experiment, then exit 1 unless it succeeded (so a script's
    `lth submit --wait` fails when the experiment does)."""
    show_experiment(experiment)
    if experiment["status"] != Status.SUCCEEDED:
        raise typer.Exit(1)


def show_experiment(experiment: Mapping[str, Any]) -> None:
    """Status line, where it stands and how long it needs, error if any, and the per-level
    table with the ticket marked (the best so far while it runs)."""
    p = experiment["progress"]
    console.print(
        f"[bold]{experiment['id']}[/bold]  {experiment['name']}  status [bold]"
        f"{experiment['status']}[/bold]  levels {p['levels_finished']}/{p['levels']}"
    )
    if experiment["status"] == Status.RUNNING and p.get("level") is not None:
        now = f"  level {p['level']} {p.get('kind') or ''}".rstrip()
        if p.get("iteration") is not None and p.get("iterations"):
            now += f"  iteration {p['iteration']}/{p['iterations']}"
        console.print(now, highlight=False)
    times = timing_text(p)
    if times:
        console.print(f"  {times}", highlight=False)
    if experiment.get("error"):
        err = experiment["error"]
        console.print(f"[red]{err['type']}: {err['message']}[/red]")
    print_notes(experiment)
    if experiment["levels"]:
        ticket = experiment.get("ticket") or {}
        training = (experiment.get("spec") or {}).get("training") or {}
        console.print(
            level_table(
                experiment["levels"],
                ticket.get("level"),
                iterations=training.get("iterations"),
                running=experiment["status"] in ACTIVE_STATUSES,
                levels=p["levels"],
                decision=experiment.get("ticket_decision"),
            )
        )
        for line in cost_lines(experiment):
            console.print(line, highlight=False)


def _ticket_cell(experiment: Mapping[str, Any]) -> str:
    """The ticket's weights and level (a pruned level, never the dense network; `?` marks an
    inconclusive candidate), "none" once levels finished without a winning ticket."""
    ticket = experiment.get("ticket")
    if ticket:
        mark = "?" if ticket.get("verdict") == "inconclusive" else ""
        return f"{100 * ticket['weights_remaining']:.1f}% L{ticket['level']}{mark}"
    return "none" if experiment["progress"]["levels_finished"] > 1 else "-"


def ls_table(page: Mapping[str, Any]) -> Table:
    """The experiments of one page, readable in 80 columns: a short id (every command takes
    it), the name (wrapped, not cut), status, levels, the ticket's weights remaining and
    accuracy."""
    from rich import box

    table = Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
        caption=f"{len(page['items'])} of {page['total']}",
    )
    table.add_column("id", no_wrap=True)
    table.add_column("name", overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("levels", no_wrap=True, justify="right")
    table.add_column("ticket", no_wrap=True, justify="right")
    table.add_column("acc %", no_wrap=True, justify="right")
    table.add_column("created", no_wrap=True)
    for e in page["items"]:
        ticket = e.get("ticket")
        acc = (ticket or {}).get("early_stop_test_accuracy")
        table.add_row(
            e["id"][:8],
            e["name"],
            e["status"],
            f"{e['progress']['levels_finished']}/{e['progress']['levels']}",
            _ticket_cell(e),
            "-" if acc is None else f"{100 * acc:.2f}",
            e["created_at"][5:16].replace("T", " "),
        )
    return table
