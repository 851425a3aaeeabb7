"""Entry point of the `lth` console script.

Each command module registers its own commands and imports heavy libraries (torch, FastAPI,
Celery) only inside the command bodies, so `lth --help` and the client commands stay fast.
"""

from __future__ import annotations

import typer

from cli.commands import (
    api,
    artifacts,
    experiments,
    keys,
    registry,
    report,
    run,
    runs,
    workers,
)

app = typer.Typer(
    name="lth",
    help="Lottery Ticket Hypothesis experiments: find winning tickets by iterative magnitude "
    "pruning, locally (`lth run`) or through the service (`lth serve`, `lth submit`).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main() -> None:
    """Keeps `lth` a group of subcommands however many are registered."""


for module in (run, api, workers, experiments, runs, artifacts, keys, report, registry):
    module.register(app)


if __name__ == "__main__":
    app()
