"""Control runs in parallel: run claims, and the level task's work stealing and waiting.

In-process against SQLite (the fault tests run real workers on Redis and PostgreSQL). A
"remote worker" here is a thread that holds a run claim and heart-beats it, which is all the
level task can see of a worker elsewhere.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from store import claims, run_claims
from store.db import dispose_engines, make_engine, session_factory, session_scope
from store.lease import LeaseOutcome
from store.models import Base, Experiment, RunClaim, Status, utcnow
from store.settings import Settings
from worker.control.offered import OfferedControl
from worker.control.run import ControlOutcome
from worker.level.task import LevelTask, Outcome

pytestmark = pytest.mark.timeout(120)

SPEC: dict[str, Any] = {
    "model": "lenet_300_100",
    "dataset": {
        "name": "synthetic",
        "validation_size": 200,
        "synthetic": {"train_size": 1000, "test_size": 200},
    },
    # Controls spread over workers: what these tests are about (stacking keeps a level on one).
    "training": {"iterations": 40, "eval_every": 20, "stack_runs": "never"},
    "pruning": {"levels": 1},
    "controls": ["random_reinit", "random_prune"],
}


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread, as workers run (OMP_NUM_THREADS=1): on a busy two-core machine
    more threads only spin against each other."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------- run claims


@pytest.fixture
def sessions(tmp_path: Path):
    engine = make_engine(f"sqlite:///{tmp_path / 'claims.db'}")
    Base.metadata.create_all(engine)
    yield session_factory(engine)
    engine.dispose()


def add_experiment(sessions) -> str:
    with sessions.begin() as session:
        row = Experiment(name="x", spec={}, status=Status.RUNNING, progress={})
        session.add(row)
        session.flush()
        return row.id


def claim(s, experiment_id: str, token: str, **kw: Any) -> LeaseOutcome:
    return run_claims.claim(
        s, experiment_id, 1, "random_prune", token, worker=token, pid=1, timeout_seconds=10, **kw
    )


def test_a_run_has_one_holder_and_a_dead_one_is_taken_over(sessions) -> None:
    experiment_id = add_experiment(sessions)
    with sessions.begin() as s:
        assert claim(s, experiment_id, "a") == "missing", "only registered runs can be claimed"
        run_claims.register(s, experiment_id, 1, ["random_reinit", "random_prune"])
        run_claims.register(s, experiment_id, 1, ["random_prune"])  # idempotent
        start = utcnow()
        assert claim(s, experiment_id, "a", now=start) == "claimed"
        assert claim(s, experiment_id, "b", now=start + timedelta(seconds=5)) == "held"
        assert run_claims.unheld(
            s, experiment_id, 1, ["random_reinit", "random_prune"], timeout_seconds=10, now=start
        ) == ["random_reinit"]
    later = start + timedelta(seconds=11)
    with sessions.begin() as s:
        assert claim(s, experiment_id, "b", now=later) == "claimed"
        assert not run_claims.heartbeat(s, experiment_id, 1, "random_prune", "a")
        assert not run_claims.finish(s, experiment_id, 1, "random_prune", "a")
        assert run_claims.finish(s, experiment_id, 1, "random_prune", "b", seconds=1.5)
        assert claim(s, experiment_id, "c", now=later + timedelta(hours=1)) == "finished"
        rows = {r.kind: r for r in run_claims.runs(s, experiment_id)}
        assert rows["random_prune"].worker == "b" and rows["random_prune"].attempts == 2
        assert rows["random_prune"].done and not rows["random_reinit"].done


def test_a_released_run_is_free_at_once_and_rows_go_with_the_experiment(sessions) -> None:
    experiment_id = add_experiment(sessions)
    with sessions.begin() as s:
        run_claims.register(s, experiment_id, 1, ["random_prune"])
        claim(s, experiment_id, "a")
        assert run_claims.release(s, experiment_id, 1, "random_prune", "a", error="boom")
        assert claim(s, experiment_id, "b") == "claimed"
    with sessions.begin() as s:
        s.delete(s.get(Experiment, experiment_id))
    with sessions.begin() as s:
        assert s.query(RunClaim).count() == 0


# --------------------------------------------------------------------------- level task


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    yield Settings(data_dir=tmp_path / "data", heartbeat_seconds=0.2, heartbeat_timeout_seconds=1.0)
    dispose_engines()


def submit(settings: Settings, spec: dict[str, Any] = SPEC) -> str:
    with session_scope(settings) as s:
        row = Experiment(name="x", spec=spec, status=Status.QUEUED, progress={})
        s.add(row)
        s.flush()
        return row.id


class Offers:
    def __init__(self) -> None:
        self.sent: list[tuple[int, list[str]]] = []

    def __call__(self, level: int, kinds: list[str]) -> None:
        self.sent.append((level, list(kinds)))


def run_level(settings: Settings, experiment_id: str, offers: Offers | None = None) -> Outcome:
    return LevelTask(
        settings, experiment_id, lambda: None, send_controls=offers or Offers(), worker="here"
    ).run()


class RemoteHolder:
    """A worker elsewhere: claims a control run and heart-beats it until it 'dies'."""

    def __init__(self, settings: Settings, experiment_id: str, kind: str, lives: float) -> None:
        self.settings, self.experiment_id, self.kind, self.lives = (
            settings,
            experiment_id,
            kind,
            lives,
        )
        self.stop = threading.Event()
        with session_scope(settings) as s:
            run_claims.register(s, experiment_id, 1, [kind])
            outcome = run_claims.claim(
                s, experiment_id, 1, kind, "remote", worker="remote", pid=0, timeout_seconds=1.0
            )
        assert outcome == "claimed"
        self.thread = threading.Thread(target=self._beat, daemon=True)
        self.thread.start()

    def _beat(self) -> None:
        deadline = time.monotonic() + self.lives
        while time.monotonic() < deadline and not self.stop.wait(0.2):
            with session_scope(self.settings) as s:
                run_claims.heartbeat(s, self.experiment_id, 1, self.kind, "remote")


def runs_of(settings: Settings, experiment_id: str) -> dict[str, RunClaim]:
    with session_scope(settings) as s:
        return {r.kind: r for r in run_claims.runs(s, experiment_id)}


def test_one_worker_alone_trains_every_control_with_the_sequential_results(
    settings: Settings, tmp_path: Path
) -> None:
    from lth_core.experiment import Experiment as Engine
    from lth_core.spec import parse_spec

    experiment_id = submit(settings)
    offers = Offers()
    assert run_level(settings, experiment_id, offers) == Outcome.LEVEL_DONE
    assert run_level(settings, experiment_id, offers) == Outcome.SUCCEEDED
    assert offers.sent == [(1, ["random_reinit", "random_prune"])], "offered, nobody took them"
    runs = runs_of(settings, experiment_id)
    assert {k: (r.worker, r.attempts, r.done) for k, r in runs.items()} == {
        "random_prune": ("here", 1, True),
        "random_reinit": ("here", 1, True),
    }
    reference = tmp_path / "reference"
    Engine(parse_spec(SPEC), reference, device="cpu").run()
    out = settings.data_dir / "experiments" / experiment_id
    for want in sorted(reference.glob("levels/*/runs/*.json")):
        got = out / want.relative_to(reference)
        a, b = json.loads(want.read_text()), json.loads(got.read_text())
        a.pop("seconds"), b.pop("seconds")
        assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True), got
    assert not list(out.glob("levels/*/staging/*")), "no staged file is left behind"


def test_the_level_waits_for_a_live_holder_and_takes_over_when_it_dies(
    settings: Settings,
) -> None:
    experiment_id = submit(settings)
    assert run_level(settings, experiment_id) == Outcome.LEVEL_DONE
    remote = RemoteHolder(settings, experiment_id, "random_prune", lives=2.0)
    offers = Offers()
    started = time.monotonic()
    assert run_level(settings, experiment_id, offers) == Outcome.SUCCEEDED
    took = time.monotonic() - started
    remote.thread.join()
    assert offers.sent == [(1, ["random_reinit"])], "a live holder's run is not offered again"
    runs = runs_of(settings, experiment_id)
    assert (runs["random_prune"].worker, runs["random_prune"].attempts) == ("here", 2)
    assert runs["random_reinit"].attempts == 1
    assert took >= 2.0, "it waited while the holder was alive"


def test_cancel_while_waiting_on_a_control_elsewhere_stops_the_level(
    settings: Settings,
) -> None:
    experiment_id = submit(settings)
    assert run_level(settings, experiment_id) == Outcome.LEVEL_DONE
    remote = RemoteHolder(settings, experiment_id, "random_prune", lives=60.0)
    result: list[Outcome] = []
    level = threading.Thread(target=lambda: result.append(run_level(settings, experiment_id)))
    level.start()
    deadline = time.monotonic() + 60  # until random_reinit is done and it only waits
    while not getattr(runs_of(settings, experiment_id).get("random_reinit"), "done", False):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with session_scope(settings) as s:
        s.get(Experiment, experiment_id).cancel_requested = True
    asked = time.monotonic()
    level.join(timeout=10)
    remote.stop.set()
    assert result == [Outcome.CANCELLED]
    assert time.monotonic() - asked < 1.5
    with session_scope(settings) as s:
        assert s.get(Experiment, experiment_id).status == Status.CANCELLED


def test_a_control_message_only_runs_what_is_still_needed(settings: Settings) -> None:
    experiment_id = submit(settings)

    def task(kind: str = "random_prune", level: int = 1) -> ControlOutcome:
        return OfferedControl(
            settings, experiment_id, level, kind, worker="there", device="cpu"
        ).run()

    assert task() == ControlOutcome.NOT_READY, "no mask yet"
    assert run_level(settings, experiment_id) == Outcome.LEVEL_DONE
    out = settings.data_dir / "experiments" / experiment_id
    # Prepare level 1 as the level task does, then let the "message" run one control.
    from lth_core.experiment import Experiment as Engine
    from lth_core.spec import parse_spec

    Engine(parse_spec(SPEC), out, device="cpu").prepare_level(1)
    assert task() == ControlOutcome.NOT_READY, "no row: the level task has not offered it"
    with session_scope(settings) as s:
        run_claims.register(s, experiment_id, 1, ["random_reinit", "random_prune"])
    remote = RemoteHolder(settings, experiment_id, "random_reinit", lives=60.0)
    assert task("random_reinit") == ControlOutcome.WAITING, "held live elsewhere"
    remote.stop.set()
    assert task() == ControlOutcome.RAN
    assert (out / "levels/001/runs/random_prune.json").is_file()
    assert task() == ControlOutcome.DONE
    assert runs_of(settings, experiment_id)["random_prune"].worker == "there"
    with session_scope(settings) as s:
        s.get(Experiment, experiment_id).cancel_requested = True
        assert not claims.wants_work(s, experiment_id)
    assert task("random_reinit") == ControlOutcome.NOTHING


def test_pipelined_levels_start_the_next_ticket_beside_a_control_with_sequential_results(
    settings: Settings, tmp_path: Path
) -> None:
    """Level 1's control is held by a live worker elsewhere: the holder does not wait for it
    but hands on, and the next task trains level 2's ticket first, then finishes level 1 (taking
    the control over once its holder is gone) and level 2. Same files as one sequential run."""
    from lth_core.experiment import Experiment as Engine
    from lth_core.spec import parse_spec

    spec = {**SPEC, "pruning": {"levels": 2}, "controls": ["random_reinit"]}
    experiment_id = submit(settings, spec)
    out = settings.data_dir / "experiments" / experiment_id
    assert run_level(settings, experiment_id) == Outcome.LEVEL_DONE  # level 0
    remote = RemoteHolder(settings, experiment_id, "random_reinit", lives=120.0)
    assert run_level(settings, experiment_id) == Outcome.LEVEL_DONE  # level 1's ticket only
    assert (out / "levels" / "001" / "runs" / "ticket.json").is_file()
    assert not (out / "levels" / "001" / "runs" / "random_reinit.json").exists()
    assert not (out / "levels" / "001" / "summary.json").exists(), "it did not wait"
    remote.stop.set()  # the worker elsewhere dies: its claim goes stale and is taken over
    remote.thread.join()
    assert run_level(settings, experiment_id) == Outcome.SUCCEEDED
    with session_scope(settings) as s:
        held = {r.level: (r.worker, r.attempts, r.done) for r in run_claims.runs(s, experiment_id)}
    assert held == {1: ("here", 2, True), 2: ("here", 1, True)}, "taken over at level 1"
    reference = tmp_path / "reference"
    Engine(parse_spec(spec), reference, device="cpu").run()
    for want in sorted(reference.glob("levels/*/runs/*.json")):
        a, b = (
            json.loads(want.read_text()),
            json.loads((out / want.relative_to(reference)).read_text()),
        )
        a.pop("seconds"), b.pop("seconds")
        assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True), want
    from safetensors import safe_open
    from safetensors.torch import load_file

    for level in (1, 2):
        mask = reference / "levels" / f"{level:03d}" / "mask.safetensors"
        theirs = out / mask.relative_to(reference)
        want, got = load_file(str(mask)), load_file(str(theirs))
        assert want.keys() == got.keys() and all(want[k].equal(got[k]) for k in want)
        # The same provenance, except that the service's file names its experiment.
        with safe_open(str(mask), "pt") as f, safe_open(str(theirs), "pt") as g:
            meta, served = f.metadata(), g.metadata()
        assert served.pop("experiment_id") == experiment_id
        assert meta == served
    with session_scope(settings) as s:
        row = s.get(Experiment, experiment_id)
        assert row.status == Status.SUCCEEDED and sorted(lv.level for lv in row.levels) == [0, 1, 2]


def test_pipeline_off_keeps_the_level_task_waiting_for_controls_held_elsewhere(
    settings: Settings,
) -> None:
    """LTH_WORKER_PIPELINE=0 (settings.worker_pipeline): the same situation as above, but the
    level task waits for level 1's control held elsewhere (taking it over once its holder dies)
    and records level 1 before handing on; level 2's ticket has not started."""
    settings = settings.model_copy(update={"worker_pipeline": False})
    spec = {**SPEC, "pruning": {"levels": 2}, "controls": ["random_reinit"]}
    experiment_id = submit(settings, spec)
    out = settings.data_dir / "experiments" / experiment_id
    assert run_level(settings, experiment_id) == Outcome.LEVEL_DONE  # level 0
    remote = RemoteHolder(settings, experiment_id, "random_reinit", lives=2.0)
    assert run_level(settings, experiment_id) == Outcome.LEVEL_DONE  # level 1, waited for
    remote.thread.join()
    assert (out / "levels" / "001" / "summary.json").is_file(), "it waited"
    assert not (out / "levels" / "002").exists(), "level 2 did not start"
    with session_scope(settings) as s:
        held = {r.level: (r.worker, r.attempts, r.done) for r in run_claims.runs(s, experiment_id)}
    assert held == {1: ("here", 2, True)}, "taken over after its holder died, not run beside"


def test_trials_through_the_worker_train_every_trials_ticket_and_match_a_local_run(
    settings: Settings, tmp_path: Path
) -> None:
    """With trials the level task trains every trial's ticket itself (the next level's masks
    need them all) and offers only the controls; the files equal one local run's."""
    from lth_core.experiment import Experiment as Engine
    from lth_core.spec import parse_spec

    spec = {**SPEC, "controls": ["random_reinit"], "trials": 2}
    experiment_id = submit(settings, spec)
    offers = Offers()
    while run_level(settings, experiment_id, offers) == Outcome.LEVEL_DONE:
        pass
    assert offers.sent == [(1, ["random_reinit", "random_reinit.t1"])], "tickets not offered"
    reference = tmp_path / "reference"
    Engine(parse_spec(spec), reference, device="cpu").run()
    out = settings.data_dir / "experiments" / experiment_id
    wanted = sorted(reference.glob("levels/*/runs/*.json"))
    assert any(p.name == "ticket.t1.json" for p in wanted)
    for want in wanted:
        a, b = (
            json.loads(want.read_text()),
            json.loads((out / want.relative_to(reference)).read_text()),
        )
        a.pop("seconds"), b.pop("seconds")
        assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True), want
    assert (out / "trials" / "001" / "ticket.safetensors").is_file()
