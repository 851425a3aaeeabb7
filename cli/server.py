"""Server commands: `lth api` and `lth openapi` (service); `lth serve`, `lth worker` (worker)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Adds this module's commands to the `lth` app."""
    register_api_commands(app)
    register_worker_commands(app)


# --------------------------------------------------------------------------- service (API)


def register_api_commands(app: typer.Typer) -> None:
    """`lth api` (the REST API alone) and `lth openapi` (its published contract)."""

    @app.command("api")
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
        uvicorn.run(
            "service.main:create_app",
            factory=True,
            host=host,
            port=port,
            log_level=log_level,
            workers=workers if workers > 1 else None,
        )

    @app.command("openapi")
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


# --------------------------------------------------------------------------- worker


def register_worker_commands(app: typer.Typer) -> None:
    """`lth worker` (Celery workers, one per GPU) and `lth serve` (API + embedded worker)."""

    @app.command("worker")
    def worker(
        gpus: Annotated[
            str,
            typer.Option(help="auto (one worker per visible GPU, CPU if none), none, or 0,1."),
        ] = "auto",
        queues: Annotated[
            str | None,
            typer.Option(help="Comma-separated queues (default: lth plus lth.gpu or lth.cpu)."),
        ] = None,
        concurrency: Annotated[
            int, typer.Option(min=1, help="Tasks at once per worker process (1 per device).")
        ] = 1,
        loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
    ) -> None:
        """Start a worker that runs experiments from the broker (LTH_BROKER_URL, or embedded)."""
        from worker.devices import parse_gpus
        from worker.launch import celery_worker_args, default_queues, node_name

        try:
            devices = parse_gpus(gpus)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--gpus") from exc
        chosen = [q for q in (queues or "").split(",") if q] or default_queues(bool(devices))
        if len(devices) > 1:
            from worker.launch import lth_worker_argv
            from worker.supervisor import Child, Supervisor

            children = [
                Child(
                    f"worker-gpu{gpu}",
                    lth_worker_argv(gpu, chosen, loglevel),
                    env={"CUDA_VISIBLE_DEVICES": gpu},
                )
                for gpu in devices
            ]
            raise typer.Exit(Supervisor(children).run())

        import os

        # Pin the device before anything could touch CUDA; "" hides every GPU (CPU worker).
        os.environ["CUDA_VISIBLE_DEVICES"] = devices[0] if devices else ""
        from worker.app import app as celery_app

        kind = f"gpu{devices[0]}" if devices else "cpu"
        celery_app.worker_main(
            celery_worker_args(
                chosen, name=node_name(kind), concurrency=concurrency, loglevel=loglevel
            )
        )

    @app.command("serve")
    def serve(
        host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
        log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
        gpus: Annotated[str, typer.Option(help="Worker devices, as for `lth worker`.")] = "auto",
    ) -> None:
        """Start the API and a worker on this machine (no Redis needed unless LTH_BROKER_URL)."""
        import logging
        import sys

        from store.broker import is_embedded, transport_options_for
        from store.db import get_engine
        from store.settings import get_settings
        from worker.launch import lth_worker_argv
        from worker.supervisor import Child, Supervisor

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
        settings = get_settings()
        get_engine(settings)  # create the tables once, before two processes race to
        from service.security import enforce_startup

        enforce_startup(host)  # no API keys: loopback only (open, logged), else refuse
        if is_embedded(settings):
            transport_options_for(settings)  # create the broker's folders
        api_argv = [sys.executable, "-m", "cli.main", "api", "--host", host, "--port", str(port)]
        children = [
            Child("api", [*api_argv, "--log-level", log_level]),
            Child("worker", lth_worker_argv(gpus, None, "INFO")),
        ]
        broker = "embedded (files under DATA_DIR/broker)" if is_embedded(settings) else "redis"
        typer.echo(f"lth serve: API on http://{host}:{port}, worker on the {broker} broker")
        raise typer.Exit(Supervisor(children).run())
