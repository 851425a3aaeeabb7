"""A real Prometheus (Debian's `prometheus`, installed by `make system`) scrapes a live
`lth api --workers 2` with the repository's deploy/prometheus.yml, and the series it stored
are read back through its HTTP query API: HTTP traffic summed over both API processes
(multiprocess mode), shed requests and open event streams, and the service's `lth_` series
from the database, the worker's counters included (written the way a worker writes them)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from s3_servers import free_port
from test_service_support import submit, tiny_spec

from store.db import dispose_engines, session_scope
from store.models import Experiment, utcnow
from store.settings import Settings
from worker.stats import WorkerStats

pytest_plugins = ("test_service_support",)

REPO = Path(__file__).resolve().parents[1]
WORKER = "lth-cpu-4242@metrics-test"


def _wait(check: Callable[[], Any], what: str, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (httpx.TransportError, KeyError, IndexError, ValueError) as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {last!r})")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[str, Settings]]:
    """`lth api --workers 2` on SQLite and the embedded broker, one event stream per caller."""
    data_dir = tmp_path / "data"
    port = free_port()
    env = {
        **os.environ,
        "LTH_DATA_DIR": str(data_dir),
        "LTH_API_MAX_STREAMS_PER_KEY": "1",
        "PYTHONPATH": str(REPO),
    }
    for name in ("LTH_DATABASE_URL", "LTH_BROKER_URL", "LTH_API_HOST", "LTH_ARTIFACTS_URL"):
        env.pop(name, None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # `lth api --workers 2` sets its own
    argv = [sys.executable, "-m", "cli.main", "api", "--port", str(port), "--workers", "2"]
    proc = subprocess.Popen(
        [*argv, "--log-level", "warning"], cwd=REPO, env=env, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: httpx.get(f"{url}/healthz", timeout=2).status_code == 200, "lth api")
        yield url, Settings(data_dir=data_dir)
    finally:
        _stop(proc)
        dispose_engines()


@pytest.fixture
def prometheus(tmp_path: Path, api: tuple[str, Settings]) -> Iterator[str]:
    """Debian's prometheus with deploy/prometheus.yml, its target pointed at the test's API."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("the prometheus binary is missing: `make system` installs it (apt)")
    config = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "lth-api" and job["metrics_path"] == "/metrics"
    job["static_configs"] = [{"targets": [api[0].removeprefix("http://")]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={path}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: httpx.get(f"{url}/-/ready", timeout=2).status_code == 200, "prometheus")
        yield url
    finally:
        _stop(proc)
        log.close()


def _query(prometheus: str, expr: str) -> dict[str, float]:
    """The instant vector ``expr`` in Prometheus, as {labels: value}."""
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=5).json()
    assert answer["status"] == "success", answer
    return {
        ",".join(f"{k}={v}" for k, v in sorted(s["metric"].items()) if k != "__name__"): float(
            s["value"][1]
        )
        for s in answer["data"]["result"]
    }


def _value(prometheus: str, expr: str) -> float | None:
    values = _query(prometheus, expr)
    return next(iter(values.values())) if len(values) == 1 else None


def _open_streams(url: str, experiment_id: str, count: int) -> tuple[list[int], threading.Event]:
    """``count`` event streams held open in threads until the event is set; their statuses."""
    statuses: list[int] = []
    answered = threading.Semaphore(0)
    release = threading.Event()

    def hold() -> None:
        with httpx.stream("GET", f"{url}/experiments/{experiment_id}/events", timeout=30) as r:
            statuses.append(r.status_code)
            answered.release()
            if r.status_code == 200:
                release.wait(120)

    for _ in range(count):
        threading.Thread(target=hold, daemon=True).start()
    for _ in range(count):
        assert answered.acquire(timeout=30), "an event stream was not answered"
    return statuses, release


def _worker_trains(settings: Settings) -> None:
    """A worker's counter fed as the engine feeds it: a stacked level (two members) reports
    iterations 0, 100, 300 through its first member; 10 s later it writes 600 iterations."""
    now = [0.0]
    stats = WorkerStats(settings, WORKER, clock=lambda: now[0])
    kinds = ("ticket", "random_reinit")
    for iteration in (0, 100, 300):
        for kind in kinds:
            stats(SimpleNamespace(level=1, kind=kind, kinds=kinds, iteration=iteration))
    now[0] = 10.0
    stats.flush()


def test_prometheus_stores_the_services_series(api: tuple[str, Settings], prometheus: str) -> None:
    url, settings = api
    with httpx.Client(base_url=url, timeout=10) as client:
        ids = []
        for _ in range(2):
            response = client.post("/experiments", json=tiny_spec())
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
        assert client.get(f"/experiments/{ids[0]}").status_code == 200
        for _ in range(8):  # new connections: spread over both API processes
            assert client.get("/healthz", headers={"Connection": "close"}).status_code == 200
    with session_scope(settings) as session:  # the second one runs, its heartbeat 30 s old
        row = session.get(Experiment, ids[1])
        assert row is not None
        row.status, row.claim_token = "running", "t"
        row.heartbeat_at = utcnow() - timedelta(seconds=30)
    _worker_trains(settings)
    statuses, release = _open_streams(url, ids[0], 4)
    admitted, refused = statuses.count(200), statuses.count(429)
    assert admitted + refused == 4 and 1 <= admitted <= 2, statuses  # one per process at most
    try:
        expected = {
            'up{job="lth-api"}': 1,
            'lth_experiments{status="queued"}': 1,
            'lth_experiments{status="running"}': 1,
            'lth_queue_experiments{queue="lth"}': 1,
            'lth_queue_messages{queue="lth"}': 2,
            'lth_runs_in_flight{kind="level"}': 1,
            'lth_queue_consumers{queue="lth"}': 0,
            f'lth_iterations_trained_total{{worker="{WORKER}"}}': 600,
            f'lth_worker_iterations_per_second{{worker="{WORKER}"}}': 60,
            # 8 here and the fixture's first, whichever process answered each
            'sum(http_requests_total{handler="/healthz",status="200"})': 9,
            'sum(http_requests_total{handler="/experiments",method="POST",status="201"})': 2,
            'sum(http_request_duration_seconds_count{handler="/experiments/{experiment_id}"})': 1,
            'sum(lth_api_shed_requests_total{reason="too_many_streams",status="429"})': refused,
            "sum(lth_api_event_streams_open)": admitted,
        }

        def wrong() -> dict[str, float | None]:
            found = {expr: _value(prometheus, expr) for expr in expected}
            return {expr: v for expr, v in found.items() if v != expected[expr]}

        deadline = time.monotonic() + 60
        while (missing := wrong()) and time.monotonic() < deadline:
            time.sleep(1)
        assert not missing, f"Prometheus stored other values: {missing}"
        age = _value(prometheus, "lth_claim_heartbeat_oldest_age_seconds")
        assert age is not None and age >= 30
        oldest = _value(prometheus, 'lth_queue_oldest_seconds{queue="lth"}')
        assert oldest is not None and oldest > 0
    finally:
        release.set()


def test_worker_counters_add_up_in_one_row_and_idle_is_zero(tmp_path: Path) -> None:
    """Each task's child writes through its own WorkerStats: the row adds them up; a task's
    end writes speed 0; a row silent past the retention is dropped by the next write."""
    from store.metrics_reads import read_snapshot
    from store.models import WorkerStats as Row
    from store.worker_stats import RETENTION

    settings = Settings(data_dir=tmp_path)
    _worker_trains(settings)
    _worker_trains(settings)  # the next task, in a new child
    now = [0.0]
    stats = WorkerStats(settings, WORKER, clock=lambda: now[0])
    stats(SimpleNamespace(level=2, kind="ticket", kinds=(), iteration=0))
    stats(SimpleNamespace(level=2, kind="ticket", kinds=(), iteration=50))
    now[0] = 5.0
    stats.close()
    with session_scope(settings) as session:
        session.add(Row(node="gone@old", iterations=1, updated_at=utcnow() - 2 * RETENTION))
    WorkerStats(settings, WORKER).close()  # any write prunes
    try:
        with session_scope(settings, read_only=True) as session:
            snapshot = read_snapshot(session.connection(), heartbeat_timeout_seconds=60)
    finally:
        dispose_engines()
    assert snapshot.iterations == {WORKER: 600 + 600 + 50}
    assert snapshot.iterations_per_second == {WORKER: 0.0}


@pytest.mark.redis
def test_queue_lengths_on_redis_count_every_priority_list_and_fail_fast(tmp_path: Path) -> None:
    """/metrics reads the broker's lists as KEDA does, and a Redis that is down costs a
    scrape under a second, not kombu's reconnects."""
    import uuid

    import redis

    from store import broker

    queue = f"metrics-test-{uuid.uuid4().hex[:8]}"
    settings = Settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:6379/0")
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        client.rpush(queue, b"a", b"b")
        client.rpush(f"{queue}\x06\x163", b"c")  # a priority-3 message
        assert broker.queue_lengths(settings, [queue, f"{queue}-empty"]) == {
            queue: 3,
            f"{queue}-empty": 0,
        }
    finally:
        client.delete(queue, f"{queue}\x06\x163")
        client.close()
    down = Settings(data_dir=tmp_path, broker_url=f"redis://127.0.0.1:{free_port()}/0")
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        broker.queue_lengths(down, [queue])
    assert time.monotonic() - started < 2.5


def test_metrics_need_no_key_name_no_experiment_and_can_be_turned_off(
    client: TestClient, settings: Settings
) -> None:
    """A scraper has no API key; the series carry no ids, names or owners; LTH_METRICS=false
    removes the route."""
    from service.main import create_app
    from store import api_keys

    experiment = submit(client, tiny_spec(name="secret-name"))
    with session_scope(settings) as session:
        api_keys.create_key(session, "alice")
    assert client.get("/experiments").status_code == 401  # keys are required now
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'lth_experiments{status="queued"} 1.0' in response.text
    assert 'http_requests_total{handler="/experiments",method="GET",status="401"}' in response.text
    for private in (experiment["id"], "secret-name", "alice"):
        assert private not in response.text
    with TestClient(create_app(settings.model_copy(update={"metrics": False}))) as off:
        assert off.get("/metrics").status_code == 404
