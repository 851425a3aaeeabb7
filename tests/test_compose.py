"""docker-compose.yml cannot run here (no Docker): check its structure, and that the commands it
runs are real `lth` commands with real options and the same as the README's."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def command(service: dict[str, Any]) -> list[str]:
    cmd = service["command"]
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def test_services_images_and_health_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) >= {"redis", "postgres", "api", "worker"}
    assert services["redis"]["image"].startswith("redis:")
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["api"]["build"] == "." and (ROOT / "Dockerfile").is_file()
    assert services["worker"]["image"] == services["api"]["image"], "one image for both"
    for name in ("redis", "postgres", "api", "worker"):
        assert services[name]["healthcheck"]["test"], f"{name} has no health check"
    for name in ("api", "worker"):
        deps = services[name]["depends_on"]
        assert deps["redis"]["condition"] == deps["postgres"]["condition"] == "service_healthy"


def test_redis_keeps_nothing_on_disk(compose: dict[str, Any]) -> None:
    """The design assumes it (the database is the system of record); say so explicitly."""
    cmd = command(compose["services"]["redis"])
    assert cmd[cmd.index("--save") + 1] == "" and cmd[cmd.index("--appendonly") + 1] == "no"


def test_api_and_worker_share_database_broker_and_artifacts(compose: dict[str, Any]) -> None:
    services = compose["services"]
    envs = [services[n]["environment"] for n in ("api", "worker")]
    assert envs[0] == envs[1]
    env = envs[0]
    assert (
        env["LTH_DATABASE_URL"].startswith("postgresql://")
        and "@postgres:" in env["LTH_DATABASE_URL"]
    )
    assert env["LTH_BROKER_URL"].startswith("redis://redis:")
    mounts = [services[n]["volumes"] for n in ("api", "worker")]
    assert mounts[0] == mounts[1] == [f"artifacts:{env['LTH_DATA_DIR']}"]
    assert "artifacts" in compose["volumes"]
    assert float(env["LTH_HEARTBEAT_TIMEOUT_SECONDS"]) > 2 * float(env["LTH_HEARTBEAT_SECONDS"])


def test_artifacts_live_in_the_object_store(compose: dict[str, Any]) -> None:
    """MinIO holds the artifacts; every variable the services set is a setting (or an AWS
    setting the store's client reads)."""
    from store.settings import known_variables

    services = compose["services"]
    env = services["api"]["environment"]
    assert env["LTH_ARTIFACTS_URL"].startswith("s3://")
    assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
    assert services["minio"]["environment"]["MINIO_ROOT_USER"] == env["AWS_ACCESS_KEY_ID"]
    for name, service in services.items():
        if service.get("image") == services["api"]["image"]:
            unknown = set(service.get("environment", {})) - known_variables()
            assert not unknown, f"{name} sets what no setting reads: {unknown}"


def test_monitoring_scrapes_the_api_and_watches_its_broker(compose: dict[str, Any]) -> None:
    """Prometheus (deploy/prometheus.yml) scrapes the API's port; Flower reads the broker the
    service uses; both only with the monitoring profile, Flower on loopback (it can stop
    workers)."""
    services = compose["services"]
    prometheus, flower = services["prometheus"], services["flower"]
    assert prometheus["profiles"] == flower["profiles"] == ["monitoring"]
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    api_cmd = command(services["api"])
    target = f"api:{api_cmd[api_cmd.index('--port') + 1]}"
    assert [
        t for c in config["scrape_configs"] for s in c["static_configs"] for t in s["targets"]
    ] == [target]
    broker = services["api"]["environment"]["LTH_BROKER_URL"]
    assert f"--broker={broker}" in command(flower)
    assert flower["ports"] == ["127.0.0.1:5555:5555"]


def test_worker_reserves_gpus(compose: dict[str, Any]) -> None:
    devices = compose["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]


def test_api_port_matches_its_command(compose: dict[str, Any]) -> None:
    api = compose["services"]["api"]
    cmd = command(api)
    port = cmd[cmd.index("--port") + 1]
    assert api["ports"] == [f"{port}:{port}"]
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"


def test_commands_are_lth_commands_and_match_the_readme(compose: dict[str, Any]) -> None:
    from cli.main import app

    click_app = typer.main.get_command(app)
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("<!-- BEGIN worker -->") : readme.index("<!-- END worker -->")]
    readme_lines = {
        line.split("#")[0].strip()
        for block in re.findall(r"```bash\n(.*?)```", section, re.S)
        for line in block.splitlines()
    }
    for name in ("api", "worker"):
        cmd = command(compose["services"][name])
        assert cmd[0] == "lth"
        assert shlex.join(cmd) in readme_lines, f"README does not show `{shlex.join(cmd)}`"
        sub = click_app.commands[cmd[1]]
        known = {opt for param in sub.params for opt in param.opts}
        for arg in cmd[2:]:
            if arg.startswith("--"):
                assert arg in known, f"`lth {cmd[1]}` has no option {arg}"
