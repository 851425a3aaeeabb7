"""`lth keys create|list|revoke`: manage API keys directly in the service's database.

These commands talk to the database (LTH_DATABASE_URL / LTH_DATA_DIR), not to the API: whoever
may run them on the server's machine administers it, and the first key can be created before
any server starts. A new key is printed once, alone on stdout (so `KEY=$(lth keys create ...)`
works); the database keeps only its hash, so a lost key is revoked and replaced, never shown.
"""

from __future__ import annotations

from typing import Annotated

import typer

keys_app = typer.Typer(
    name="keys",
    help="Create, list and revoke API keys (each key acts for one owner; admins see all).",
    no_args_is_help=True,
)


@keys_app.command("create")
def create(
    owner: Annotated[
        str, typer.Option("--owner", help="Who the key acts for: its experiments' owner.")
    ],
    admin: Annotated[
        bool, typer.Option("--admin", help="May see and manage every owner's experiments.")
    ] = False,
) -> None:
    """Create a key for OWNER and print it once (only its hash is stored)."""
    from store import api_keys
    from store.db import session_scope

    try:
        api_keys.check_owner(owner)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--owner") from None
    with session_scope() as session:
        row, key = api_keys.create_key(session, owner, admin=admin)
        key_id = row.id
    role = "admin " if admin else ""
    typer.echo(
        f"created {role}key {key_id} for owner {owner!r}; store it now, it is not shown again:",
        err=True,
    )
    typer.echo(key)


@keys_app.command("list")
def list_(
    revoked: Annotated[bool, typer.Option("--revoked", help="Include revoked keys.")] = False,
) -> None:
    """List keys: id, owner, admin, created, revoked (never the keys themselves)."""
    from store import api_keys
    from store.db import session_scope

    with session_scope() as session:
        rows = api_keys.list_keys(session, include_revoked=revoked)
        lines = [
            "\t".join(
                [
                    row.id,
                    row.owner,
                    "admin" if row.admin else "-",
                    row.created_at.isoformat(timespec="seconds"),
                    row.revoked_at.isoformat(timespec="seconds") if row.revoked_at else "-",
                ]
            )
            for row in rows
        ]
    typer.echo("id\towner\tadmin\tcreated\trevoked")
    for line in lines:
        typer.echo(line)


@keys_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (from `lth keys list`).")],
) -> None:
    """Revoke a key: requests with it are refused from now on."""
    from store import api_keys
    from store.db import session_scope

    with session_scope() as session:
        done = api_keys.revoke(session, key_id)
    if not done:
        typer.echo(f"no active key {key_id[:12]!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id[:12]}")


def register(app: typer.Typer) -> None:
    """Adds `lth keys ...` to the `lth` app."""
    app.add_typer(keys_app, name="keys")
