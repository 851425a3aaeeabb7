"""`lth registry`: every model, dataset, control and pruning strategy a spec may name, built in
or from an installed plugin, with its package and version and the facts it has.

Without --url it reads this environment (what `lth run` here can use); with --url it asks the
service (GET /registry: what the API accepts, which the workers need installed too). Reading
imports no plugin's torch code either way.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.commands.common import ApiKeyOption, console, with_client

SECTIONS = ("models", "datasets", "controls", "strategies")


def register(app: typer.Typer) -> None:
    """Adds this module's commands to the `lth` app."""
    app.command("registry")(registry)


def registry(
    url: Annotated[
        str | None,
        typer.Option(
            "--url", help="Ask this lth service (GET /registry) instead of this environment."
        ),
    ] = None,
    api_key: ApiKeyOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the listing as JSON.")] = False,
) -> None:
    """List the models, datasets, controls and pruning strategies, built in or from plugins."""
    if url is None:
        from lth_core.registry.listing import describe

        listing = describe()
    else:
        from cli.api_client import call

        listing = with_client(url, api_key, lambda c: call(c, "GET", "/registry").json())
    if as_json:
        typer.echo(json.dumps(listing, indent=2))
        return
    for section in SECTIONS:
        console.print(_table(section, listing.get(section, [])))


def _table(section: str, items: list[dict[str, Any]]) -> Table:
    table = Table(title=section, title_justify="left")
    for column in ("name", "from", "facts"):
        table.add_column(column, overflow="fold")
    for item in items:
        source = "built-in" if item["source"] == "built-in" else _package(item)
        table.add_row(item["name"], source, item.get("problem") or _facts(item))
    return table


def _package(item: dict[str, Any]) -> str:
    version = f" {item['version']}" if item.get("version") else ""
    return f"{item.get('package') or '?'}{version}"


def _facts(item: dict[str, Any]) -> str:
    """One line: the description, then the facts that fit on it."""
    facts = item.get("facts") or {}
    parts = [item["description"]] if item.get("description") else []
    if "input_shape" in facts:
        parts.append("input " + "x".join(map(str, facts["input_shape"])))
    for key, label in (("num_classes", "classes"), ("train_size", "train"), ("test_size", "test")):
        if key in facts:
            parts.append(f"{facts[key]:,} {label}")
    if "normalization" in facts:
        parts.append("normalized")
    if facts.get("layer_kinds"):
        parts.append("kinds " + ", ".join(facts["layer_kinds"]))
    if facts.get("paper_defaults"):
        parts.append("defaults: " + _defaults(facts["paper_defaults"]))
    return "; ".join(parts)


def _defaults(defaults: dict[str, Any]) -> str:
    dataset = defaults.get("dataset", {}).get("name")
    training = defaults.get("training", {})
    shown = [
        f"{dataset}" if dataset else "",
        f"{training.get('optimizer', '')} {training.get('learning_rate', '')}".strip(),
        f"{training['iterations']:,} it" if "iterations" in training else "",
    ]
    return ", ".join(s for s in shown if s)
