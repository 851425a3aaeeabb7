"""Terminal client of the service: `lth submit`, `status`, `ls`, `cancel`, `download`.

It speaks only HTTP (httpx) and imports nothing heavy, so it works from any machine that can
reach the API. Every command takes `--url` (or LTH_URL) and exits non-zero with the server's
error message when a request fails.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.render import level_table

DEFAULT_URL = "http://127.0.0.1:8000"
FINISHED = ("succeeded", "failed", "cancelled")

console = Console()
err_console = Console(stderr=True)

UrlOption = Annotated[
    str, typer.Option("--url", envvar="LTH_URL", help="Base URL of the lth service.")
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="LTH_API_KEY",
        help="API key (from `lth keys create`); prefer LTH_API_KEY: options show in `ps`.",
        show_default=False,
    ),
]


class ClientError(Exception):
    """A request that failed, with the message to show."""


def _client(url: str, api_key: str | None = None, timeout: float = 30.0) -> httpx.Client:
    """An HTTP client for the service, sending ``Authorization: Bearer`` when a key is given
    (``--api-key``, else LTH_API_KEY)."""
    headers = {"Accept": "application/json"}
    key = api_key or os.environ.get("LTH_API_KEY")
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.Client(base_url=url.rstrip("/"), timeout=timeout, headers=headers)


def _error_message(response: httpx.Response) -> str:
    """The service's `{"error": {"message"}}`, or the raw status if the body is something else."""
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:500] or response.reason_phrase
    return f"HTTP {response.status_code}: {message}"


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise ClientError(f"cannot reach the service at {client.base_url}: {exc}") from exc
    if response.is_error:
        raise ClientError(_error_message(response))
    return response


def _fetch_json(url: str, api_key: str | None, method: str, path: str, **kwargs: Any) -> Any:
    """One request whose JSON answer a command prints; any failure ends the command."""
    try:
        with _client(url, api_key) as client:
            return _call(client, method, path, **kwargs).json()
    except ClientError as exc:
        raise _fail(str(exc)) from None


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {message}")
    return typer.Exit(1)


def submit_spec(
    client: httpx.Client, spec: Mapping[str, Any], key: str, attempts: int = 5
) -> dict[str, Any]:
    """POSTs the spec, retrying lost connections and 503s with the same Idempotency-Key, so a
    retry can never create a second experiment."""
    delay = 0.5
    for attempt in range(attempts):
        try:
            response = client.post("/experiments", json=spec, headers={"Idempotency-Key": key})
        except httpx.TransportError as exc:
            if attempt == attempts - 1:
                raise ClientError(f"cannot reach the service at {client.base_url}: {exc}") from exc
        else:
            if response.status_code != 503 or attempt == attempts - 1:
                if response.is_error:
                    raise ClientError(_error_message(response))
                return response.json()
        time.sleep(delay)
        delay = min(delay * 2, 5.0)
    raise ClientError("unreachable")  # pragma: no cover - the loop returns or raises


def wait_for(
    client: httpx.Client, experiment_id: str, interval: float, show: bool = True
) -> dict[str, Any]:
    """Polls until the experiment finishes, with bars over levels and the current run."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, disable=not show) as bars:
        levels_bar = bars.add_task("levels", total=None, info="")
        run_bar = bars.add_task("iterations", total=None, info="")
        while True:
            experiment = _call(client, "GET", f"/experiments/{experiment_id}").json()
            p = experiment["progress"]
            bars.update(levels_bar, total=p["levels"], completed=p["levels_finished"])
            info = experiment["status"]
            if p.get("level") is not None:
                info = f"level {p['level']} {p.get('kind') or ''}".rstrip()
                acc = (p.get("metrics") or {}).get("test_accuracy")
                if acc is not None:
                    info += f"  test acc {100 * acc:.2f}%"
            bars.update(
                run_bar, total=p.get("iterations"), completed=p.get("iteration") or 0, info=info
            )
            if experiment["status"] in FINISHED:
                return experiment
            time.sleep(interval)


def show_experiment(experiment: Mapping[str, Any]) -> None:
    """Status line, error if any, and the per-level table with the ticket marked."""
    p = experiment["progress"]
    console.print(
        f"[bold]{experiment['id']}[/bold]  {experiment['name']}  status [bold]"
        f"{experiment['status']}[/bold]  levels {p['levels_finished']}/{p['levels']}"
    )
    if experiment.get("error"):
        err = experiment["error"]
        console.print(f"[red]{err['type']}: {err['message']}[/red]")
    if experiment["levels"]:
        ticket = experiment.get("ticket") or {}
        console.print(level_table(experiment["levels"], ticket.get("level")))


def register(app: typer.Typer) -> None:
    """Adds this module's commands to the `lth` app."""

    @app.command("submit")
    def submit(
        spec_file: Annotated[Path, typer.Argument(help="Experiment spec (JSON).", exists=True)],
        url: UrlOption = DEFAULT_URL,
        api_key: ApiKeyOption = None,
        wait: Annotated[bool, typer.Option("--wait", help="Follow it until it finishes.")] = False,
        interval: Annotated[float, typer.Option(help="Seconds between polls.")] = 1.0,
        idempotency_key: Annotated[
            str | None, typer.Option(help="Reuse to make a repeated submit return the same one.")
        ] = None,
    ) -> None:
        """Submit an experiment spec; with --wait, show progress and the final table."""
        try:
            spec = json.loads(spec_file.read_text())
        except ValueError as exc:
            raise _fail(f"{spec_file} is not JSON: {exc}") from None
        try:
            with _client(url, api_key) as client:
                experiment = submit_spec(client, spec, idempotency_key or uuid.uuid4().hex)
                console.print(f"submitted {experiment['id']} ({experiment['status']})")
                if not wait:
                    return
                try:
                    experiment = wait_for(client, experiment["id"], interval)
                except KeyboardInterrupt:
                    console.print(f"stopped waiting; follow with `lth status {experiment['id']}`")
                    raise typer.Exit(130) from None
        except ClientError as exc:
            raise _fail(str(exc)) from None
        show_experiment(experiment)
        if experiment["status"] != "succeeded":
            raise typer.Exit(1)

    @app.command("status")
    def status(
        experiment_id: Annotated[str, typer.Argument(help="Experiment id.")],
        url: UrlOption = DEFAULT_URL,
        api_key: ApiKeyOption = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON.")] = False,
    ) -> None:
        """Show an experiment: status, progress, finished levels and the ticket."""
        experiment = _fetch_json(url, api_key, "GET", f"/experiments/{experiment_id}")
        if as_json:
            console.print_json(data=experiment)
        else:
            show_experiment(experiment)

    @app.command("ls")
    def ls(
        url: UrlOption = DEFAULT_URL,
        api_key: ApiKeyOption = None,
        status_filter: Annotated[
            str | None, typer.Option("--status", help="Only this status.")
        ] = None,
        limit: Annotated[int, typer.Option(help="How many.")] = 20,
        offset: Annotated[int, typer.Option(help="Skip this many (newest first).")] = 0,
    ) -> None:
        """List experiments, newest first."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status_filter:
            params["status"] = status_filter
        page = _fetch_json(url, api_key, "GET", "/experiments", params=params)
        table = Table(caption=f"{len(page['items'])} of {page['total']}")
        table.add_column("id", no_wrap=True, min_width=32)
        for column in ("name", "status", "levels", "ticket", "created"):
            table.add_column(column)
        for e in page["items"]:
            ticket = e.get("ticket")
            table.add_row(
                e["id"],
                e["name"],
                e["status"],
                f"{e['progress']['levels_finished']}/{e['progress']['levels']}",
                "-"
                if not ticket
                else f"{ticket['level']} ({100 * ticket['weights_remaining']:.1f}%)",
                e["created_at"][:19].replace("T", " "),
            )
        console.print(table)

    @app.command("cancel")
    def cancel(
        experiment_id: Annotated[str, typer.Argument(help="Experiment id.")],
        url: UrlOption = DEFAULT_URL,
        api_key: ApiKeyOption = None,
    ) -> None:
        """Cancel: a queued experiment never starts; a running one stops at its next evaluation."""
        e = _fetch_json(url, api_key, "POST", f"/experiments/{experiment_id}/cancel")
        pending = " (stops at its next evaluation)" if e["status"] == "running" else ""
        console.print(f"{e['id']}: {e['status']}{pending}")

    @app.command("download")
    def download(
        experiment_id: Annotated[str, typer.Argument(help="Experiment id.")],
        output: Annotated[
            Path | None, typer.Option("-o", "--output", help="File to write.")
        ] = None,
        level: Annotated[int | None, typer.Option(help="The mask of this level.")] = None,
        ticket: Annotated[
            bool, typer.Option("--ticket", help="The winning ticket (default).")
        ] = False,
        url: UrlOption = DEFAULT_URL,
        api_key: ApiKeyOption = None,
    ) -> None:
        """Download a level's mask (--level K) or the winning ticket (--ticket) as safetensors."""
        if level is not None and ticket:
            raise _fail("give --level K or --ticket, not both")
        if level is None:
            path, default = f"/experiments/{experiment_id}/ticket", f"{experiment_id}-ticket"
        else:
            path = f"/experiments/{experiment_id}/levels/{level}/mask"
            default = f"{experiment_id}-level{level:03d}-mask"
        target = output or Path(f"{default}.safetensors")
        try:
            with _client(url, api_key, timeout=300.0) as client:
                size = download_to(client, path, target)
        except ClientError as exc:
            raise _fail(str(exc)) from None
        console.print(f"wrote {target} ({size} bytes)")


def download_to(client: httpx.Client, path: str, target: Path) -> int:
    """Streams a file to ``target`` through a temporary file, so a failed download leaves no
    half file behind under the target's name."""
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        with client.stream("GET", path) as response:
            if response.is_error:
                response.read()
                raise ClientError(_error_message(response))
            size = 0
            with tmp.open("wb") as fh:
                for chunk in response.iter_bytes():
                    fh.write(chunk)
                    size += len(chunk)
        tmp.replace(target)
    except httpx.HTTPError as exc:
        raise ClientError(f"cannot reach the service at {client.base_url}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return size
