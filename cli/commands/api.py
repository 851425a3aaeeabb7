"""`lth api` (the REST API alone) and `lth openapi` (its published contract). FastAPI and
uvicorn load only inside the commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Adds this module's commands to the `lth` app."""
    app.command("api")(api)
    app.command("openapi")(openapi)


def api(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            envvar="LTH_API_WORKERS",
            help="API processes sharing the port (one database pool and one in-flight "
            "limit each); more than one pays when the CPUs are not all training.",
        ),
    ] = 1,
) -> None:
    """Start the REST API alone (workers run elsewhere: `lth worker`)."""
    import uvicorn

    from service.security import enforce_startup

    # Checked once here; the rule is also applied per request in every process (each
    # builds its app from the same environment, LTH_API_HOST included).
    enforce_startup(host)  # no API keys: loopback only (open, logged), else refuse
    if workers > 1:
        _multiprocess_metrics(port)
    uvicorn.run(
        "service.main:create_app",
        factory=True,
        host=host,
        port=port,
        log_level=log_level,
        workers=workers if workers > 1 else None,
    )


def _multiprocess_metrics(port: int) -> None:
    """Several API processes: /metrics sums their series from files in one folder
    (prometheus-client's multiprocess mode), which must be set before they start and be
    empty at start. A PROMETHEUS_MULTIPROC_DIR the operator set is used as it is."""
    import os
    import shutil

    from store.settings import get_settings

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    folder = get_settings().data_dir / "prometheus" / f"api-{port}"
    shutil.rmtree(folder, ignore_errors=True)  # a previous run's processes are gone
    folder.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)


def openapi(
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write here (default openapi.yaml).")
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Fail if the file differs from the app.")
    ] = False,
) -> None:
    """Regenerate openapi.yaml from the app (or check that it is up to date)."""
    from service import openapi as spec
    from service.main import create_app

    path = output or spec.OPENAPI_PATH
    text = spec.render_yaml(create_app())
    if check:
        if not path.is_file() or path.read_text() != text:
            typer.echo(f"{path} is out of date; run `lth openapi`", err=True)
            raise typer.Exit(1)
        typer.echo(f"{path} is up to date")
        return
    path.write_text(text)
    typer.echo(f"wrote {path}")
