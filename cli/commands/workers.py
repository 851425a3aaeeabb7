"""`lth worker` (Celery workers, one per GPU) and `lth serve` (the API and a worker on one
machine): the commands that run experiments. Celery and torch load only inside them."""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Adds this module's commands to the `lth` app."""
    app.command("worker")(worker)
    app.command("serve")(serve)


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
        raise typer.Exit(_supervise_per_gpu(devices, chosen, loglevel))

    import os

    # Pin the device before anything could touch CUDA; "" hides every GPU (CPU worker).
    os.environ["CUDA_VISIBLE_DEVICES"] = devices[0] if devices else ""
    from worker.app import app as celery_app

    kind = f"gpu{devices[0]}" if devices else "cpu"
    celery_app.worker_main(
        celery_worker_args(chosen, name=node_name(kind), concurrency=concurrency, loglevel=loglevel)
    )


def _supervise_per_gpu(devices: list[str], queues: list[str], loglevel: str) -> int:
    """One `lth worker` child per GPU, each seeing only its own (CUDA_VISIBLE_DEVICES is read
    once, when CUDA starts, so a process cannot switch devices later); the exit status of the
    supervisor, which restarts a child that dies."""
    from worker.launch import lth_worker_argv
    from worker.supervisor import Child, Supervisor

    children = [
        Child(
            f"worker-gpu{gpu}",
            lth_worker_argv(gpu, queues, loglevel),
            env={"CUDA_VISIBLE_DEVICES": gpu},
        )
        for gpu in devices
    ]
    return Supervisor(children).run()


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
