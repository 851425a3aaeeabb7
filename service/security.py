"""The start-up rule of `lth api` and `lth serve`: no keys means loopback only.

A server with no API keys would let anyone who can reach it read, cancel and delete every
experiment. On a loopback address that is one person's own machine, and the server may run
open (and says so in its log); on any other address it refuses to start until a key exists.
"""

from __future__ import annotations

import ipaddress
import logging
import os

from store.settings import Settings, get_settings

log = logging.getLogger("lth.security")


class StartupRefused(RuntimeError):
    """The server must not start as configured; the message says what to do."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (127.0.0.0/8, ::1) or ``localhost``.

    ``0.0.0.0``, ``::`` and every other name are not: they reach other machines.
    """
    name = host.strip().strip("[]").lower()
    if name in ("localhost", "localhost.localdomain") or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_startup(host: str, settings: Settings | None = None) -> bool:
    """Applies the rule for a server about to bind ``host``; returns True when it runs open.

    Raises StartupRefused for a non-loopback address without keys. Records the address in
    ``LTH_API_HOST`` so that the app this process builds next (uvicorn's factory) applies the
    same rule to each request: revoking the last key never opens a public server.
    """
    from store import api_keys
    from store.db import get_engine, session_factory

    os.environ["LTH_API_HOST"] = host
    get_settings.cache_clear()
    settings = (settings or get_settings()).model_copy(update={"api_host": host})
    try:
        with session_factory(get_engine(settings))() as session:
            has_keys = api_keys.any_active(session)
    except Exception as exc:  # the database is down: the app still enforces the rule per request
        log.warning(
            "cannot check for API keys (%s); requests will need a key unless none exist and "
            "%s is a loopback address",
            type(exc).__name__,
            host,
        )
        return False
    if has_keys:
        log.info("API keys required on %s", host)
        return False
    if not is_loopback(host):
        raise StartupRefused(
            f"refusing to start on {host}: no API keys exist, so anyone who can reach this "
            "address could read, cancel and delete every experiment. Create a key first "
            "(`lth keys create --owner NAME --admin`), or bind to 127.0.0.1."
        )
    log.warning(
        "open mode: no API keys exist, so the API on loopback address %s answers any local "
        "request without a key; create one with `lth keys create --owner NAME` to require keys",
        host,
    )
    return True


def enforce_startup(host: str) -> None:
    """:func:`check_startup` for the `lth api`/`lth serve` commands: the refusal becomes a
    clean exit with the message (status 1), and the log line is shown even before uvicorn
    configures logging."""
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:  %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    try:
        check_startup(host)
    except StartupRefused as exc:
        raise SystemExit(f"lth: {exc}") from None
