"""Fast checks of the worker's parts: Celery settings, claims, the reconciler, progress, devices,
the supervisor. Claims and the reconciler run against a real database (SQLite in a temporary
directory; the fault tests cover PostgreSQL end to end)."""

from __future__ import annotations

import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from store import claims
from store.broker import (
    RUN_CONTROL_TASK,
    RUN_EXPERIMENT_TASK,
    broker_url_for,
    celery_config,
    transport_options_for,
    visibility_timeout_for,
)
from store.db import make_engine, session_factory
from store.models import Base, Experiment, Status, utcnow
from store.settings import Settings
from worker.config import worker_config
from worker.devices import parse_gpus
from worker.progress import ProgressWriter
from worker.reconciler import Reconciler
from worker.supervisor import Child, Supervisor


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        broker_url="redis://127.0.0.1:6379/0",
        heartbeat_seconds=1,
        heartbeat_timeout_seconds=10,
        task_time_limit_seconds=3600,
    )


@pytest.fixture
def sessions(tmp_path: Path):
    engine = make_engine(f"sqlite:///{tmp_path / 'claims.db'}")
    Base.metadata.create_all(engine)
    yield session_factory(engine)
    engine.dispose()


def add_experiment(sessions, **values) -> str:
    with sessions.begin() as session:
        row = Experiment(name="x", spec={}, status=Status.QUEUED, progress={}, **values)
        session.add(row)
        session.flush()
        return row.id


# --------------------------------------------------------------------------- configuration


def test_celery_is_configured_for_long_tasks(settings: Settings) -> None:
    conf = worker_config(settings)
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["worker_concurrency"] == 1
    assert conf["worker_max_tasks_per_child"] == 1
    assert conf["task_serializer"] == "json" and conf["accept_content"] == ["json"]
    assert conf["task_time_limit"] == 3600
    assert conf["task_soft_time_limit"] < conf["task_time_limit"]
    visibility = conf["broker_transport_options"]["visibility_timeout"]
    assert visibility == visibility_timeout_for(settings) > conf["task_time_limit"]
    assert conf["worker_cancel_long_running_tasks_on_connection_loss"] is False
    assert conf["task_routes"][RUN_EXPERIMENT_TASK] == {"queue": "lth"}
    assert conf["task_routes"][RUN_CONTROL_TASK] == {"queue": "lth"}


def test_embedded_broker_lives_under_the_data_dir(tmp_path: Path) -> None:
    embedded = Settings(data_dir=tmp_path, broker_url=None)
    assert broker_url_for(embedded) == "filesystem://"
    options = transport_options_for(embedded)
    assert options["data_folder_in"] == options["data_folder_out"]
    for key in ("data_folder_in", "processed_folder", "control_folder"):
        assert Path(options[key]).is_dir() and Path(options[key]).is_relative_to(tmp_path)
    assert celery_config(embedded)["worker_enable_remote_control"] is False


def test_worker_parent_never_imports_torch() -> None:
    """CUDA must only ever be initialized in a task's child process."""
    import subprocess

    code = "import worker.app, worker.tasks, sys; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.stdout.strip() == "False"


def test_gpu_option() -> None:
    assert parse_gpus("0,1") == ["0", "1"]
    assert parse_gpus("none") == []
    with pytest.raises(ValueError):
        parse_gpus("zero")


# --------------------------------------------------------------------------- claims


def test_a_live_claim_refuses_a_second_copy(sessions) -> None:
    experiment_id = add_experiment(sessions)
    with sessions.begin() as s:
        assert claims.claim(s, experiment_id, "a", timeout_seconds=10, max_attempts=3) == "claimed"
    with sessions.begin() as s:
        assert claims.claim(s, experiment_id, "b", timeout_seconds=10, max_attempts=3) == "held"
        assert claims.heartbeat(s, experiment_id, "a")
        assert not claims.heartbeat(s, experiment_id, "b")
        row = s.get(Experiment, experiment_id)
        assert row.status == Status.RUNNING and row.attempts == 1 and row.started_at


def test_a_dead_holder_is_taken_over_and_notices(sessions) -> None:
    experiment_id = add_experiment(sessions)
    start = utcnow()
    with sessions.begin() as s:
        claims.claim(s, experiment_id, "a", timeout_seconds=10, max_attempts=3, now=start)
    later = start + timedelta(seconds=11)
    with sessions.begin() as s:
        outcome = claims.claim(s, experiment_id, "b", timeout_seconds=10, max_attempts=3, now=later)
        assert outcome == "claimed"
        assert not claims.heartbeat(s, experiment_id, "a"), "the old holder must learn it lost"
        assert not claims.release(s, experiment_id, "a", level_finished=True)
        assert claims.release(s, experiment_id, "b", level_finished=True)
        assert s.get(Experiment, experiment_id).attempts == 0


def test_claims_stop_a_crash_loop_and_honour_cancel(sessions) -> None:
    looping = add_experiment(sessions, attempts=3)
    cancelled = add_experiment(sessions, cancel_requested=True)
    done = add_experiment(sessions)
    with sessions.begin() as s:
        s.get(Experiment, done).status = Status.SUCCEEDED
    with sessions.begin() as s:
        assert claims.claim(s, looping, "t", timeout_seconds=10, max_attempts=3) == "exhausted"
        assert (
            claims.claim(s, cancelled, "t", timeout_seconds=10, max_attempts=3)
            == "cancel_requested"
        )
        assert claims.claim(s, done, "t", timeout_seconds=10, max_attempts=3) == "finished"
        assert claims.claim(s, "0" * 32, "t", timeout_seconds=10, max_attempts=3) == "missing"


# --------------------------------------------------------------------------- reconciler


class FakeBroker:
    """Sends into a record; ``waiting`` are the experiments whose message is in the queues
    (stale ones of finished experiments included: they must not hide a lost one)."""

    def __init__(self, waiting: tuple[str, ...] = ()) -> None:
        self.sent: list[str] = []
        self.queues: dict[str, str] = {}
        self.counted: tuple[str, ...] = ()
        self.waiting = set(waiting)

    def send(self, experiment_id: str, queue: str) -> None:
        self.sent.append(experiment_id)
        self.queues[experiment_id] = queue

    def pending(self, queues: tuple[str, ...]) -> set[str]:
        self.counted = queues
        return self.waiting


def test_reconciler_resends_a_dead_holders_experiment_once(settings, sessions) -> None:
    experiment_id = add_experiment(sessions)
    with sessions.begin() as s:
        claims.claim(
            s,
            experiment_id,
            "dead",
            timeout_seconds=10,
            max_attempts=3,
            now=utcnow() - timedelta(seconds=60),
        )
    brokers = [FakeBroker(), FakeBroker()]
    for broker in brokers:  # two workers' reconcilers: only one may win
        Reconciler(settings, sessions, broker.send, broker.pending).reconcile_once()
    assert sorted(brokers[0].sent + brokers[1].sent) == [experiment_id]


def test_reconciler_resends_lost_messages_but_not_a_healthy_queue(settings, sessions) -> None:
    old = utcnow() - timedelta(seconds=60)
    waiting = [add_experiment(sessions, created_at=old) for _ in range(2)]
    healthy = FakeBroker(waiting=tuple(waiting))
    Reconciler(settings, sessions, healthy.send, healthy.pending).reconcile_once()
    assert healthy.sent == [], "a queue holding every waiting experiment is left alone"
    flushed = FakeBroker()
    Reconciler(settings, sessions, flushed.send, flushed.pending).reconcile_once()
    assert sorted(flushed.sent) == sorted(waiting)
    again = FakeBroker()
    Reconciler(settings, sessions, again.send, again.pending).reconcile_once()
    assert again.sent == [], "re-sent experiments get a new grace period"


def test_stale_messages_of_finished_experiments_do_not_hide_a_lost_one(settings, sessions) -> None:
    """Found before: two stale messages of a cancelled experiment made the queue's depth
    (2) look like enough for the one lost message, which then waited for minutes."""
    old = utcnow() - timedelta(seconds=60)
    lost = add_experiment(sessions, created_at=old)
    cancelled = add_experiment(sessions, created_at=old)
    with sessions.begin() as s:
        s.get(Experiment, cancelled).status = Status.CANCELLED
    stale = FakeBroker(waiting=(cancelled, cancelled))
    Reconciler(settings, sessions, stale.send, stale.pending).reconcile_once()
    assert stale.sent == [lost]


def test_reconciler_resends_to_the_queue_stored_with_the_experiment(settings, sessions) -> None:
    """A lost message is re-sent where the experiment was sent, not to the default queue,
    and the stored queues are counted when deciding whether messages were lost."""
    old = utcnow() - timedelta(seconds=60)
    gpu = add_experiment(sessions, created_at=old, queue="lth.gpu")
    custom = add_experiment(sessions, created_at=old, queue="team-a.big")
    legacy = add_experiment(sessions, created_at=old)  # a row from before the column
    dead = add_experiment(sessions, queue="lth.cpu")
    with sessions.begin() as s:
        claims.claim(
            s, dead, "dead", timeout_seconds=10, max_attempts=3, now=utcnow() - timedelta(60)
        )
    flushed = FakeBroker()
    report = Reconciler(settings, sessions, flushed.send, flushed.pending).reconcile_once()
    assert report.taken_over == [dead]
    assert flushed.queues == {
        gpu: "lth.gpu",
        custom: "team-a.big",
        legacy: "lth",
        dead: "lth.cpu",
    }
    assert set(flushed.counted) >= {"lth", "lth.gpu", "lth.cpu", "team-a.big"}


def test_a_claim_stores_the_queue_its_message_came_from_once(sessions) -> None:
    legacy = add_experiment(sessions)
    routed = add_experiment(sessions, queue="lth.gpu")
    with sessions.begin() as s:
        for experiment_id in (legacy, routed):
            claims.claim(s, experiment_id, "t", timeout_seconds=10, max_attempts=3, queue="lth.cpu")
    with sessions.begin() as s:
        assert claims.queue_of(s, legacy) == "lth.cpu", "a row naming none learns it"
        assert claims.queue_of(s, routed) == "lth.gpu", "a stored queue is kept"


def test_reconciler_cancels_an_unclaimed_cancel_request(settings, sessions) -> None:
    experiment_id = add_experiment(sessions, cancel_requested=True)
    with sessions.begin() as s:
        s.get(Experiment, experiment_id).status = Status.RUNNING
    broker = FakeBroker()
    report = Reconciler(settings, sessions, broker.send, broker.pending).reconcile_once()
    assert report.cancelled == [experiment_id] and broker.sent == []


# --------------------------------------------------------------------------- progress


class Event:
    def __init__(self, level, kind, iteration, iterations=100, record=None) -> None:
        self.level, self.kind, self.iteration = level, kind, iteration
        self.iterations, self.record = iterations, record


def test_progress_is_throttled_but_never_misses_a_new_run() -> None:
    written: list[dict] = []
    now = [0.0]
    writer = ProgressWriter(written.append, levels=4, min_interval=1.0, clock=lambda: now[0])
    writer(Event(0, "ticket", 0))
    writer(Event(0, "ticket", 10, record={"val_accuracy": 0.5}))  # too soon: kept, not written
    now[0] = 1.5
    writer(Event(0, "ticket", 20))
    writer(Event(1, "ticket", 0))  # a new run is always written
    writer(Event(1, "ticket", 100, record={"val_accuracy": 0.9}))  # its final evaluation too
    assert [(w["level"], w["iteration"]) for w in written] == [(0, 0), (0, 20), (1, 0), (1, 100)]
    assert written[1]["metrics"] == {"val_accuracy": 0.5} and written[1]["levels"] == 4


def test_progress_write_failures_never_stop_training() -> None:
    def broken(_: dict) -> None:
        raise RuntimeError("database down")

    ProgressWriter(broken, levels=1)(Event(0, "ticket", 0))


# --------------------------------------------------------------------------- supervisor


def test_supervisor_restarts_a_dying_child_and_stops_cleanly() -> None:
    child = Child("flaky", [sys.executable, "-c", "import time; time.sleep(0.2)"])
    sleeper = Child("steady", [sys.executable, "-c", "import time; time.sleep(60)"])
    supervisor = Supervisor([child, sleeper], stop_grace=5, max_backoff=0.5)
    threading.Timer(3.0, supervisor.stop).start()
    started = time.monotonic()
    assert supervisor.run() == 0
    assert child.restarts >= 1
    assert sleeper.restarts == 0 and sleeper.process.poll() is not None
    assert time.monotonic() - started < 15


def test_a_level_settles_its_controls_but_never_a_trials_ticket(settings, monkeypatch) -> None:
    """With trials, each trial's ticket (`ticket`, `ticket.t1`) is the next level's input,
    not a control: only the controls' run rows are settled."""
    from contextlib import contextmanager

    from lth_core.experiment import Experiment
    from worker.level import controls as level_controls

    class Level:
        def runs_at_level(self, level: int) -> list[str]:
            return ["ticket", "random_reinit", "ticket.t1", "random_reinit.t1"]

        def tickets_at(self, level: int) -> list[str]:
            return ["ticket", "ticket.t1"]

        controls_of = Experiment.controls_of

    settled: list[list[str]] = []

    @contextmanager
    def no_session(_settings):
        yield None

    monkeypatch.setattr(level_controls, "session_scope", no_session)
    monkeypatch.setattr(
        level_controls.run_claims, "settle", lambda _s, _id, _level, kinds: settled.append(kinds)
    )
    left = level_controls.complete(
        settings,
        Level(),
        "e1",
        3,
        [],
        worker="w",
        should_stop=lambda: False,
        check_stop=lambda: None,
    )
    assert left == []
    assert settled == [["random_reinit", "random_reinit.t1"]]
