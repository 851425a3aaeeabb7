"""Settings come from LTH_* environment variables, with defaults that need no setup."""

from __future__ import annotations

from pathlib import Path

import pytest

from store.settings import Settings, get_settings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATA_DIR", "DATABASE_URL", "BROKER_URL", "HEARTBEAT_SECONDS"):
        monkeypatch.delenv(f"LTH_{name}", raising=False)
    s = Settings()
    assert s.data_dir == Path(".lth")
    assert s.database_url is None and s.broker_url is None
    assert s.resolved_database_url == "sqlite:///.lth/lth.db"
    assert s.experiments_dir == Path(".lth/experiments")
    assert s.heartbeat_seconds == 10 and s.heartbeat_timeout_seconds == 60
    assert s.task_time_limit_seconds > 0


def test_environment_and_cache_reset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LTH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LTH_DATABASE_URL", "postgresql://u@db:5432/lth")
    monkeypatch.setenv("LTH_BROKER_URL", "redis://redis:6379/0")
    monkeypatch.setenv("LTH_HEARTBEAT_SECONDS", "2.5")
    get_settings.cache_clear()
    try:
        s = get_settings()
        assert s is get_settings()
        assert s.data_dir == tmp_path and s.resolved_database_url == "postgresql://u@db:5432/lth"
        assert s.broker_url == "redis://redis:6379/0" and s.heartbeat_seconds == 2.5
    finally:
        get_settings.cache_clear()


def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LTH_HEARTBEAT_SECONDS", "-1")
    with pytest.raises(ValueError, match="heartbeat_seconds"):
        Settings()
