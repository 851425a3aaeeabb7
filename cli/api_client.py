"""The service's HTTP client, shared by every command that talks to the API.

It holds no typer and no rich: the commands decide what a failure or a progress update looks
like in a terminal, while the HTTP concerns (auth, the API's error bodies, retrying what the
server asks to be retried, event streams, id prefixes) are written once, here. Failures are
raised as ClientError carrying the message a user should read.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from store.status import FINISHED_STATUSES

DEFAULT_URL = "http://127.0.0.1:8000"

#: Most seconds a client waits on one Retry-After, and how many times it retries a read.
MAX_RETRY_AFTER = 30.0
READ_RETRIES = 5


class ClientError(Exception):
    """A request that failed, with the message to show."""


class SpecRejected(ClientError):
    """A submit refused as an invalid spec: the message as `error_message` words it, plus
    each problem as (spec path, message), so `lth submit` can say which input gave it."""

    def __init__(self, message: str, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
        super().__init__(message)
        self.problems = problems


class StreamUnavailable(Exception):
    """The event stream cannot be followed here (an older server, a buffering proxy)."""


def unreachable(client: httpx.Client, exc: Exception) -> ClientError:
    """The one wording of a transport failure, so every command reports it alike."""
    return ClientError(f"cannot reach the service at {client.base_url}: {exc}")


def connect(url: str, api_key: str | None = None, timeout: float = 30.0) -> httpx.Client:
    """An HTTP client for the service, sending ``Authorization: Bearer`` when a key is given
    (``--api-key``, else LTH_API_KEY)."""
    headers = {"Accept": "application/json"}
    key = api_key or os.environ.get("LTH_API_KEY")
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.Client(base_url=url.rstrip("/"), timeout=timeout, headers=headers)


def error_message(response: httpx.Response) -> str:
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
        return _spec_problems(response.status_code, details)
    return f"HTTP {response.status_code}: {message}"


def spec_problems(details: list[Mapping[str, Any]]) -> list[tuple[tuple[str | int, ...], str]]:
    """The API's validation details as (location in the spec, message): the body's ``loc``
    names FastAPI's request parts, the spec path starts after ``body``."""
    return [
        (tuple(p for p in d.get("loc", []) if p != "body"), str(d.get("msg", ""))) for d in details
    ]


def spec_path(loc: tuple[str | int, ...]) -> str:
    """``training.lr``, ``levels[2]``; ``spec`` for the whole body."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "spec"


def problem_lines(
    status_code: int | None,
    problems: list[tuple[tuple[str | int, ...], str]],
    tag: Callable[[tuple[str | int, ...]], str] | None = None,
) -> str:
    """``invalid spec (N problems):`` and one line per problem, as `lth run` prints them
    (``tag``: the input it came from, e.g. ``[in spec.json]``)."""
    count = "1 problem" if len(problems) == 1 else f"{len(problems)} problems"
    head = f"invalid spec ({count}):"
    lines = [head if status_code is None else f"HTTP {status_code}: {head}"]
    for loc, msg in problems:
        suffix = f"  [{tag(loc)}]" if tag is not None else ""
        lines.append(f"  {spec_path(loc)}: {msg}{suffix}")
    return "\n".join(lines)


def _spec_problems(status_code: int, details: list[Mapping[str, Any]]) -> str:
    return problem_lines(status_code, spec_problems(details))


def retry_after(response: httpx.Response, default: float = 1.0) -> float:
    """The seconds a 503 or 429 asks the client to wait (``Retry-After``), bounded."""
    try:
        return min(MAX_RETRY_AFTER, max(0.0, float(response.headers.get("Retry-After", default))))
    except ValueError:
        return default


def call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request; a read answered 503 (an API at capacity sheds load that way, or the
    database is briefly down) is retried after its Retry-After, a few times."""
    for attempt in range(READ_RETRIES + 1):
        try:
            response = client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise unreachable(client, exc) from exc
        if response.status_code == 503 and method in ("GET", "HEAD") and attempt < READ_RETRIES:
            time.sleep(retry_after(response))
            continue
        break
    if response.is_error:
        raise ClientError(error_message(response))
    return response


class Conditional:
    """GETs with ``If-None-Match``: an unchanged resource costs a 304 and no body."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.cache: dict[str, tuple[str, Any]] = {}

    def get(self, path: str) -> Any:
        """The resource's JSON, from the cache when the server answers 304."""
        etag, body = self.cache.get(path, (None, None))
        headers = {"If-None-Match": etag} if etag else {}
        response = call(self.client, "GET", path, headers=headers)
        if response.status_code == 304 and body is not None:
            return body
        body = response.json()
        if response.headers.get("ETag"):
            self.cache[path] = (response.headers["ETag"], body)
        return body


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
                    raise ClientError(error_message(response))
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


def follow_experiment(
    client: httpx.Client,
    experiment_id: str,
    interval: float,
    on_progress: Callable[[str, Mapping[str, Any]], None],
) -> dict[str, Any]:
    """The experiment once it has finished, calling ``on_progress(status, progress)`` on the
    way: from its event stream, or, where that is not available, by polling every `interval`
    seconds with ETags (so an unchanged experiment costs the server no body)."""
    reader = Conditional(client)
    path = f"/experiments/{experiment_id}"
    experiment = reader.get(path)
    on_progress(experiment["status"], experiment["progress"])
    if experiment["status"] in FINISHED_STATUSES:
        return experiment
    state = {"status": experiment["status"]}

    def on_event(name: str, data: dict[str, Any]) -> None:
        if name == "status":
            state["status"] = data["status"]
        elif name == "progress":
            on_progress(state["status"], data)

    try:
        follow_events(client, experiment_id, on_event)
        return reader.get(path)
    except StreamUnavailable:
        pass  # polling below
    while True:
        experiment = reader.get(path)
        on_progress(experiment["status"], experiment["progress"])
        if experiment["status"] in FINISHED_STATUSES:
            return experiment
        time.sleep(interval)


def submit_spec(
    client: httpx.Client,
    spec: Mapping[str, Any],
    key: str,
    attempts: int = 5,
    *,
    again: bool = False,
) -> dict[str, Any]:
    """POSTs the spec, retrying lost connections and 503s with the same Idempotency-Key, so a
    retry can never create a second experiment (``again``: even if one of the same spec is
    queued, running or succeeded)."""
    delay = 0.5
    params = {"again": "true"} if again else {}
    for attempt in range(attempts):
        try:
            response = client.post(
                "/experiments", json=spec, headers={"Idempotency-Key": key}, params=params
            )
        except httpx.TransportError as exc:
            if attempt == attempts - 1:
                raise unreachable(client, exc) from exc
        else:
            if response.status_code != 503 or attempt == attempts - 1:
                if response.is_error:
                    raise _submit_error(response)
                return response.json()
        time.sleep(delay)
        delay = min(delay * 2, 5.0)
    raise ClientError("unreachable")  # pragma: no cover - the loop returns or raises


def estimate_spec(client: httpx.Client, spec: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the API would make of the spec (POST /experiments/estimate: validated, its cost
    estimated, nothing created); None from a server too old to have the route. Refused as a
    submit would be: SpecRejected for an invalid spec."""
    try:
        response = client.post("/experiments/estimate", json=spec)
    except httpx.TransportError as exc:
        raise unreachable(client, exc) from exc
    if response.status_code == 405:  # only GET and DELETE /experiments/{id} there
        return None
    if response.is_error:
        raise _submit_error(response)
    return response.json()


def _submit_error(response: httpx.Response) -> ClientError:
    """A refused submit: SpecRejected (with its problems) for an invalid spec."""
    message = error_message(response)
    try:
        error = response.json()["error"]
        if error.get("type") == "invalid_spec" and error.get("details"):
            return SpecRejected(message, spec_problems(error["details"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    return ClientError(message)


def resolve_id(client: httpx.Client, ref: str) -> str:
    """A full id from an id or a unique start of one (as `lth ls` shows them): the API
    resolves it among the caller's experiments (one GET), and answers an ambiguous start
    with the matching ids."""
    if len(ref) == 32 or not ref or any(c not in "0123456789abcdef" for c in ref.lower()):
        return ref
    return str(call(client, "GET", f"/experiments/{ref.lower()}").json()["id"])


def download_to(client: httpx.Client, path: str, target: Path) -> int:
    """Streams a file to ``target`` through a temporary file, so a failed download leaves no
    half file behind under the target's name."""
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        with client.stream("GET", path) as response:
            if response.is_error:
                response.read()
                raise ClientError(error_message(response))
            size = 0
            with tmp.open("wb") as fh:
                for chunk in response.iter_bytes():
                    fh.write(chunk)
                    size += len(chunk)
        tmp.replace(target)
    except httpx.HTTPError as exc:
        raise unreachable(client, exc) from exc
    finally:
        tmp.unlink(missing_ok=True)
    return size
