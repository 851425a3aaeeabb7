"""Secure by default at start-up, and `lth keys`: no keys means loopback only."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cli.commands import keys as keys_cli
from service.security import StartupRefused, check_startup, enforce_startup, is_loopback
from store import api_keys
from store.db import dispose_engines, session_scope
from store.settings import Settings, get_settings


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """LTH_DATA_DIR for commands that read the environment (SQLite there); restored after."""
    monkeypatch.setenv("LTH_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("LTH_DATABASE_URL", raising=False)
    monkeypatch.setenv("LTH_API_HOST", "127.0.0.1")  # check_startup rewrites it
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()
    dispose_engines()


def test_loopback_addresses() -> None:
    for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST", "a.localhost"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "10.0.0.1", "192.168.1.2", "example.com", "", "127.0.0.1.nip.io"):
        assert not is_loopback(host), host


def test_loopback_without_keys_runs_open_and_says_so(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="lth.security")
    assert check_startup("127.0.0.1") is True
    assert "open mode" in caplog.text and "lth keys create" in caplog.text


def test_other_address_without_keys_refuses_to_start(data_dir: Path) -> None:
    for host in ("0.0.0.0", "::", "192.168.1.10"):
        with pytest.raises(StartupRefused, match="no API keys"):
            check_startup(host)
        with pytest.raises(SystemExit) as exited:
            enforce_startup(host)
        assert "refusing to start" in str(exited.value.code)


def test_other_address_with_a_key_starts_and_remembers_its_host(data_dir: Path) -> None:
    with session_scope() as session:
        api_keys.create_key(session, "ops", admin=True)
    assert check_startup("0.0.0.0") is False
    # The app uvicorn builds next in this process applies the same rule per request.
    assert get_settings().api_host == "0.0.0.0"


def test_lth_api_refuses_a_public_address_without_keys(data_dir: Path) -> None:
    from cli.main import app as lth

    result = CliRunner().invoke(lth, ["api", "--host", "0.0.0.0", "--port", "1"])
    assert result.exit_code == 1
    assert "refusing to start on 0.0.0.0" in result.output


def test_lth_keys_create_list_revoke(data_dir: Path) -> None:
    app = typer.Typer()

    @app.callback()
    def _main() -> None:
        """A group, as in cli/main.py."""

    keys_cli.register(app)
    runner = CliRunner()
    created = runner.invoke(app, ["keys", "create", "--owner", "alice", "--admin"])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("lth_") and "not shown again" in created.stderr
    with session_scope(Settings(data_dir=data_dir)) as session:
        principal = api_keys.authenticate(session, key)
    assert principal is not None and principal.owner == "alice" and principal.admin

    listed = runner.invoke(app, ["keys", "list"])
    assert listed.exit_code == 0 and "alice" in listed.stdout and "admin" in listed.stdout
    assert key not in listed.output and key.split("_", 2)[2] not in listed.output

    key_id = key.split("_")[1]
    assert runner.invoke(app, ["keys", "revoke", key_id]).exit_code == 0
    assert runner.invoke(app, ["keys", "revoke", key_id]).exit_code == 1
    assert "alice" not in runner.invoke(app, ["keys", "list"]).stdout
    assert "alice" in runner.invoke(app, ["keys", "list", "--revoked"]).stdout
    bad = runner.invoke(app, ["keys", "create", "--owner", "../etc"])
    assert bad.exit_code != 0
