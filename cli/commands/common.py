"""What the commands that talk to the service share: the `--url` and `--api-key` options, the
consoles, and turning a ClientError into the one-line error and exit 1 every command ends with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

import httpx
import typer
from rich.console import Console
from rich.markup import escape

from cli.api_client import ClientError, connect

T = TypeVar("T")

console = Console()
err_console = Console(stderr=True)

UrlOption = Annotated[
    str, typer.Option("--url", envvar="LTH_URL", help="Base URL of the lth service.")
]
IdArgument = Annotated[str, typer.Argument(help="Experiment id (or its start).")]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="LTH_API_KEY",
        help="API key (from `lth keys create`); prefer LTH_API_KEY: options show in `ps`.",
        show_default=False,
    ),
]


def fail(message: str) -> typer.Exit:
    """Prints ``error: message`` on stderr (as text: ``[in spec.json]`` is no markup); the
    caller raises what it returns, so the type checker sees that the command ends there."""
    err_console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True, highlight=False)
    return typer.Exit(1)


def with_client(
    url: str, api_key: str | None, work: Callable[[httpx.Client], T], timeout: float = 30.0
) -> T:
    """Runs `work(client)`; any failure ends the command with its message."""
    try:
        with connect(url, api_key, timeout) as client:
            return work(client)
    except ClientError as exc:
        raise fail(str(exc)) from None
