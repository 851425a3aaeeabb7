"""Every message accounted for: the reconciler reads which experiments have a message waiting,
on both transports (issue 24)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from store import broker
from store.settings import Settings


def _send_and_read(settings: Settings, queue: str) -> None:
    ids = [uuid.uuid4().hex for _ in range(3)]
    try:
        for experiment_id in ids:
            broker.send_experiment(settings, experiment_id, queue)
        broker.client_app(settings).send_task(
            broker.RUN_CONTROL_TASK, args=[uuid.uuid4().hex, 1, "random_reinit"], queue=queue
        )
        assert broker.pending_experiments(settings, (queue,)) == set(ids)
        assert broker.pending_experiments(settings, ("elsewhere",)) == set()
    finally:
        broker.close_clients()


def test_pending_experiments_in_the_embedded_broker(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    _send_and_read(settings, "lth.gpu")
    (broker.broker_dir(settings) / "queue" / "1_x.lth.gpu.msg").write_bytes(b"not json")
    assert len(broker.pending_experiments(settings, ("lth.gpu",))) == 3  # malformed: skipped


@pytest.mark.redis
def test_pending_experiments_in_redis(tmp_path: Path) -> None:
    redis = pytest.importorskip("redis")
    url = "redis://127.0.0.1:6379/0"
    try:
        redis.Redis.from_url(url).ping()
    except Exception as exc:  # pragma: no cover - the server is part of the test machine
        pytest.skip(f"Redis not reachable: {exc}")
    queue = f"lth-test-{uuid.uuid4().hex}"  # a queue of this test's own
    try:
        _send_and_read(Settings(data_dir=tmp_path / "data", broker_url=url), queue)
    finally:
        redis.Redis.from_url(url).delete(queue)
