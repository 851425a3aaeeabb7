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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.render import cost_lines, level_table

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


#: Most seconds a client waits on one Retry-After, and how many times it retries a read.
MAX_RETRY_AFTER = 30.0
READ_RETRIES = 5


def retry_after(response: httpx.Response, default: float = 1.0) -> float:
    """The seconds a 503 or 429 asks the client to wait (``Retry-After``), bounded."""
    try:
        return min(MAX_RETRY_AFTER, max(0.0, float(response.headers.get("Retry-After", default))))
    except ValueError:
        return default


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request; a read answered 503 (an API at capacity sheds load that way, or the
    database is briefly down) is retried after its Retry-After, a few times."""
    for attempt in range(READ_RETRIES + 1):
        try:
            response = client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot reach the service at {client.base_url}: {exc}") from exc
        if response.status_code == 503 and method in ("GET", "HEAD") and attempt < READ_RETRIES:
            time.sleep(retry_after(response))
            continue
        break
    if response.is_error:
        raise ClientError(_error_message(response))
    return response


class Conditional:
    """GETs with ``If-None-Match``: an unchanged resource costs a 304 and no body."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.cache: dict[str, tuple[str, Any]] = {}

    def get(self, path: str) -> Any:
        etag, body = self.cache.get(path, (None, None))
        headers = {"If-None-Match": etag} if etag else {}
        response = _call(self.client, "GET", path, headers=headers)
        if response.status_code == 304 and body is not None:
            return body
        body = response.json()
        if response.headers.get("ETag"):
            self.cache[path] = (response.headers["ETag"], body)
        return body


class StreamUnavailable(Exception):
    """The event stream cannot be followed here (an older server, a buffering proxy)."""


def follow_events(
    client: httpx.Client,
    experiment_id: str,
    on_event: Callable[[str, dict[str, Any]], None],
    *,
    quiet_seconds: float = 20.0,
    reconnects: int = 5,
) -> None:
    """Follows ``GET /experiments/{id}/events`` until its ``end`` event, calling
    ``on_event(name, data)`` for each event. A dropped connection is resumed with
    ``Last-Event-ID``; a 503 waits its Retry-After. Raises StreamUnavailable when the stream
    is not served, or when nothing (not even a heartbeat) arrives for ``quiet_seconds``: a
    proxy that buffers the stream; the caller then polls.
    """
    cursor: str | None = None
    failures = 0
    timeout = httpx.Timeout(10.0, read=quiet_seconds)
    while True:
        headers = {"Accept": "text/event-stream"}
        if cursor:
            headers["Last-Event-ID"] = cursor
        try:
            with client.stream(
                "GET", f"/experiments/{experiment_id}/events", headers=headers, timeout=timeout
            ) as response:
                if response.status_code == 503 and failures < reconnects:
                    failures += 1
                    time.sleep(retry_after(response))
                    continue
                if response.status_code in (401, 403):
                    response.read()
                    raise ClientError(_error_message(response))
                content_type = response.headers.get("content-type", "")
                if response.status_code != 200 or not content_type.startswith("text/event-stream"):
                    raise StreamUnavailable(f"HTTP {response.status_code} {content_type}")
                name, data = "message", []
                for line in response.iter_lines():
                    if line.startswith(":"):
                        continue  # heartbeat
                    if line == "":
                        if data:
                            payload = json.loads("\n".join(data))
                            on_event(name, payload)
                            if name == "end":
                                return
                            if name == "error":
                                raise ClientError(payload.get("message", "stream error"))
                        name, data = "message", []
                        continue
                    field, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if field == "event":
                        name = value
                    elif field == "data":
                        data.append(value)
                    elif field == "id":
                        cursor = value
                failures = 0  # the server closed a healthy stream (its time limit): resume
        except httpx.ReadTimeout as exc:
            raise StreamUnavailable(f"nothing received for {quiet_seconds:.0f} s") from exc
        except httpx.TransportError as exc:
            failures += 1
            if failures > reconnects:
                raise StreamUnavailable(str(exc)) from exc
            time.sleep(min(5.0, 0.5 * failures))


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
    """Follows the experiment until it finishes, with bars over levels and the current run:
    through its event stream, or, where that is not available, by polling with ETags."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
    )
    reader = Conditional(client)
    path = f"/experiments/{experiment_id}"
    with Progress(*columns, console=console, disable=not show) as bars:
        levels_bar = bars.add_task("levels", total=None, info="")
        run_bar = bars.add_task("iterations", total=None, info="")

        def draw(status: str, p: Mapping[str, Any]) -> None:
            bars.update(levels_bar, total=p["levels"], completed=p["levels_finished"])
            info = status
            if p.get("level") is not None:
                info = f"level {p['level']} {p.get('kind') or ''}".rstrip()
                acc = (p.get("metrics") or {}).get("test_accuracy")
                if acc is not None:
                    info += f"  test acc {100 * acc:.2f}%"
            bars.update(
                run_bar, total=p.get("iterations"), completed=p.get("iteration") or 0, info=info
            )

        experiment = reader.get(path)
        draw(experiment["status"], experiment["progress"])
        if experiment["status"] in FINISHED:
            return experiment
        state = {"status": experiment["status"]}

        def on_event(name: str, data: dict[str, Any]) -> None:
            if name == "status":
                state["status"] = data["status"]
            elif name == "progress":
                draw(state["status"], data)

        try:
            follow_events(client, experiment_id, on_event)
            return reader.get(path)
        except StreamUnavailable:
            pass  # polling below
        while True:
            experiment = reader.get(path)
            draw(experiment["status"], experiment["progress"])
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
        for line in cost_lines(experiment):
            console.print(line)


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
