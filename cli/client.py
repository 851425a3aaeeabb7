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
    """The service's `{"error": {"message"}}`, or the raw status if the body is something else.

    An invalid spec is shown as `lth run` shows it: one line per problem (the API's
    `details`, worded by lth_core.spec.errors)."""
    try:
        error = response.json()["error"]
        message = error["message"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}: {response.text[:500] or response.reason_phrase}"
    details = error.get("details") or []
    if error.get("type") == "invalid_spec" and details:
        count = "1 problem" if len(details) == 1 else f"{len(details)} problems"
        lines = [f"HTTP {response.status_code}: invalid spec ({count}):"]
        for d in details:
            loc = [p for p in d.get("loc", []) if p != "body"]
            path = ""
            for part in loc:
                path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else part)
            lines.append(f"  {path or 'spec'}: {d.get('msg', '')}")
        return "\n".join(lines)
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
    err_console.print(f"[red]error:[/red] {message}", soft_wrap=True, highlight=False)
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
    client: httpx.Client,
    experiment_id: str,
    interval: float,
    show: bool = True,
    line_seconds: float = 5.0,
) -> dict[str, Any]:
    """Follows the experiment until it finishes, with bars over levels and the current run
    (and the speed and ETA the API reports): through its event stream, or, where that is not
    available, by polling with ETags. Without a terminal, a line at each new run and every
    `line_seconds` instead, so a log shows where it stands."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
    )
    lines = show and not console.is_terminal
    last: dict[str, Any] = {"line": float("-inf"), "run": None}
    reader = Conditional(client)
    path = f"/experiments/{experiment_id}"
    with Progress(*columns, console=console, disable=not show or lines) as bars:
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
                times = timing_text(p)
                if times:
                    info += f"  {times}"
            bars.update(
                run_bar, total=p.get("iterations"), completed=p.get("iteration") or 0, info=info
            )
            run = (status, p.get("level"), p.get("kind"))
            now = time.monotonic()
            if lines and (run != last["run"] or now - last["line"] >= line_seconds):
                at = f" iteration {p['iteration']}/{p['iterations']}" if p.get("iterations") else ""
                console.print(
                    f"levels {p['levels_finished']}/{p['levels']}  {info}{at}",
                    highlight=False,
                    soft_wrap=True,
                )
                last.update(line=now, run=run)

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


def timing_text(progress: Mapping[str, Any]) -> str:
    """``elapsed 1:02  12.5 it/s  level ETA 0:40  ETA 5:10`` from what the API reports."""
    from lth_core.results.eta import clock_text

    parts = []
    if progress.get("elapsed_seconds") is not None:
        parts.append(f"elapsed {clock_text(progress['elapsed_seconds'])}")
    if progress.get("iterations_per_second") is not None:
        parts.append(f"{progress['iterations_per_second']:.1f} it/s")
    if progress.get("level_eta_seconds") is not None:
        parts.append(f"level ETA {clock_text(progress['level_eta_seconds'])}")
    if progress.get("eta_seconds") is not None:
        parts.append(f"ETA {clock_text(progress['eta_seconds'])}")
    return "  ".join(parts)


def show_final(experiment: Mapping[str, Any]) -> None:
    """What `--wait` ends with: the experiment, then exit 1 unless it succeeded."""
    show_experiment(experiment)
    if experiment["status"] != "succeeded":
        raise typer.Exit(1)


def show_experiment(experiment: Mapping[str, Any]) -> None:
    """Status line, where it stands and how long it needs, error if any, and the per-level
    table with the ticket marked (the best so far while it runs)."""
    p = experiment["progress"]
    console.print(
        f"[bold]{experiment['id']}[/bold]  {experiment['name']}  status [bold]"
        f"{experiment['status']}[/bold]  levels {p['levels_finished']}/{p['levels']}"
    )
    running = experiment["status"] in ("queued", "running")
    if experiment["status"] == "running" and p.get("level") is not None:
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
    for note in experiment.get("notes") or []:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    if experiment["levels"]:
        ticket = experiment.get("ticket") or {}
        training = (experiment.get("spec") or {}).get("training") or {}
        console.print(
            level_table(
                experiment["levels"],
                ticket.get("level"),
                iterations=training.get("iterations"),
                running=running,
                levels=p["levels"],
            )
        )
        for line in cost_lines(experiment):
            console.print(line, highlight=False)


def resolve_id(client: httpx.Client, ref: str) -> str:
    """A full id from an id or a unique prefix of one (as `lth ls` shows them)."""
    if len(ref) == 32 or not ref or any(c not in "0123456789abcdef" for c in ref.lower()):
        return ref
    matches: list[str] = []
    offset = 0
    while True:
        page = _call(client, "GET", "/experiments", params={"limit": 200, "offset": offset}).json()
        matches += [e["id"] for e in page["items"] if e["id"].startswith(ref.lower())]
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"] or offset >= 5000:
            break
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ClientError(f"no experiment id starts with {ref}")
    raise ClientError(f"{ref} is the start of {len(matches)} ids; give more of it")


def _with_client(url: str, api_key: str | None, work: Any, timeout: float = 30.0) -> Any:
    """Runs `work(client)`; any failure ends the command with its message."""
    try:
        with _client(url, api_key, timeout) as client:
            return work(client)
    except ClientError as exc:
        raise _fail(str(exc)) from None


def _short(experiment_id: str) -> str:
    return experiment_id[:8]


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
            _short(e["id"]),
            e["name"],
            e["status"],
            f"{e['progress']['levels_finished']}/{e['progress']['levels']}",
            "-" if not ticket else f"{100 * ticket['weights_remaining']:.1f}% L{ticket['level']}",
            "-" if acc is None else f"{100 * acc:.2f}",
            e["created_at"][5:16].replace("T", " "),
        )
    return table


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
        set_: Annotated[
            list[str] | None,
            typer.Option(
                "--set", help="Override a spec field, e.g. --set training.iterations=2000."
            ),
        ] = None,
    ) -> None:
        """Submit an experiment spec; with --wait, show progress, ETA and the final table."""
        from cli.run import apply_overrides

        try:
            spec = json.loads(spec_file.read_text())
        except ValueError as exc:
            raise _fail(f"{spec_file} is not JSON: {exc}") from None
        if not isinstance(spec, dict):
            raise _fail(f"{spec_file} must hold a JSON object (the spec)")
        spec = apply_overrides(spec, set_ or [])
        try:
            with _client(url, api_key) as client:
                experiment = submit_spec(client, spec, idempotency_key or uuid.uuid4().hex)
                console.print(f"submitted {experiment['id']} ({experiment['status']})")
                for note in experiment.get("notes") or []:
                    console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
                if not wait:
                    return
                try:
                    experiment = wait_for(client, experiment["id"], interval)
                except KeyboardInterrupt:
                    console.print(f"stopped waiting; follow with `lth status {experiment['id']}`")
                    raise typer.Exit(130) from None
        except ClientError as exc:
            raise _fail(str(exc)) from None
        show_final(experiment)

    @app.command("status")
    def status(
        experiment_id: Annotated[str, typer.Argument(help="Experiment id (or its start).")],
        url: UrlOption = DEFAULT_URL,
        api_key: ApiKeyOption = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON.")] = False,
    ) -> None:
        """Show an experiment: status, progress with elapsed time, speed and ETA, finished
        levels and the ticket."""
        experiment = _with_client(
            url,
            api_key,
            lambda c: _call(c, "GET", f"/experiments/{resolve_id(c, experiment_id)}").json(),
        )
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
        page = _fetch_json(url, api_key, "GET", "/experiments", params=params)
        console.print(ls_table(page))

    @app.command("cancel")
    def cancel(
        experiment_id: Annotated[str, typer.Argument(help="Experiment id (or its start).")],
        url: UrlOption = DEFAULT_URL,
        api_key: ApiKeyOption = None,
    ) -> None:
        """Cancel: a queued experiment never starts; a running one stops at its next evaluation."""
        e = _with_client(
            url,
            api_key,
            lambda c: _call(
                c, "POST", f"/experiments/{resolve_id(c, experiment_id)}/cancel"
            ).json(),
        )
        pending = " (stops at its next evaluation)" if e["status"] == "running" else ""
        console.print(f"{e['id']}: {e['status']}{pending}")

    @app.command("resume")
    def resume(
        experiment_id: Annotated[str, typer.Argument(help="Experiment id (or its start).")],
        url: UrlOption = DEFAULT_URL,
        api_key: ApiKeyOption = None,
        wait: Annotated[bool, typer.Option("--wait", help="Follow it until it finishes.")] = False,
        interval: Annotated[float, typer.Option(help="Seconds between polls.")] = 1.0,
    ) -> None:
        """Continue a cancelled or failed experiment from its finished levels (nothing that
        finished is trained again)."""

        def work(client: httpx.Client) -> dict[str, Any]:
            full = resolve_id(client, experiment_id)
            e = _call(client, "POST", f"/experiments/{full}/resume").json()
            done = e["progress"]["levels_finished"]
            console.print(
                f"{e['id']}: {e['status']}, continuing after {done} finished "
                f"level{'s' if done != 1 else ''} of {e['progress']['levels']}",
                soft_wrap=True,
            )
            return wait_for(client, full, interval) if wait else e

        experiment = _with_client(url, api_key, work)
        if wait:
            show_final(experiment)

    @app.command("delete")
    def delete(
        experiment_id: Annotated[str, typer.Argument(help="Experiment id (or its start).")],
        url: UrlOption = DEFAULT_URL,
        api_key: ApiKeyOption = None,
    ) -> None:
        """Delete a succeeded, failed or cancelled experiment and its artifacts (cancel a
        running one first)."""

        def work(client: httpx.Client) -> str:
            full = resolve_id(client, experiment_id)
            _call(client, "DELETE", f"/experiments/{full}")
            return full

        console.print(f"deleted {_with_client(url, api_key, work)}")

    @app.command("metrics")
    def metrics(
        experiment_id: Annotated[str, typer.Argument(help="Experiment id (or its start).")],
        level: Annotated[int, typer.Argument(help="The level (0 is the dense network).")],
        url: UrlOption = DEFAULT_URL,
        api_key: ApiKeyOption = None,
        csv: Annotated[
            bool, typer.Option("--csv", help="Every run's curve as CSV, one row per evaluation.")
        ] = False,
    ) -> None:
        """A level's runs (ticket and controls): their numbers, or their curves with --csv."""
        data = _with_client(
            url,
            api_key,
            lambda c: _call(
                c, "GET", f"/experiments/{resolve_id(c, experiment_id)}/levels/{level}/metrics"
            ).json(),
        )
        if csv:
            typer.echo(metrics_csv(data), nl=False)
        else:
            console.print(metrics_table(data))

    @app.command("download")
    def download(
        experiment_id: Annotated[str, typer.Argument(help="Experiment id (or its start).")],
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

        def work(client: httpx.Client) -> tuple[Path, int]:
            full = resolve_id(client, experiment_id)
            if level is None:
                path, default = f"/experiments/{full}/ticket", f"{full}-ticket"
            else:
                path = f"/experiments/{full}/levels/{level}/mask"
                default = f"{full}-level{level:03d}-mask"
            target = output or Path(f"{default}.safetensors")
            return target, download_to(client, path, target)

        target, size = _with_client(url, api_key, work, timeout=300.0)
        console.print(f"wrote {target} ({size} bytes)")


def _ticket_first(runs: Mapping[str, Any]) -> list[tuple[str, Any]]:
    return sorted(runs.items(), key=lambda kv: (kv[0] != "ticket", kv[0]))


CURVE_FIELDS = ("iteration", "train_loss", "val_loss", "val_accuracy", "test_accuracy")


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
