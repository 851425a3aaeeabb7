"""Soak test: the job system under load and faults, then invariants checked from the database.

A bounded run on this machine (127.0.0.1 only). Several clients submit small experiments (with
idempotency keys, some retried), poll, list, download, cancel and delete at random while two
workers train. Every ``--kill-every`` seconds one worker is killed with SIGKILL and restarted.
With ``--setup redis-pg`` the broker is a Redis server of its own (restarted once, losing
every message it held) and PostgreSQL sits behind a TCP proxy whose connection is cut once
for a few seconds. With ``--setup embedded`` (the default ``lth serve``: SQLite and the
filesystem broker) the API and one worker are ``lth serve`` and the second worker is an
``lth worker``; kills alternate between them.

When the time is up the clients stop, the workers finish what is left, and these invariants
are checked from the database and the artifacts:

- every experiment reached a final state (``stuck`` counts those that did not);
- no finished level was lost or duplicated (``lost_levels``: a level row without its summary
  on disk, a summary on disk without its row, a gap, or a succeeded experiment missing one);
- every succeeded experiment's masks and metrics equal a clean run of the same spec on the
  same thread count (``mismatched``);
- no 5xx except during the deliberate database cut, and those with ``Retry-After``
  (``server_errors`` counts the others);
- every retried submission returned the experiment its key created, and the database holds
  one experiment per key (``idempotency_violations``).

The last line printed is one JSON object; the exit status is 1 if an invariant failed.

    .venv/bin/python bench/soak.py --minutes 10 --setup embedded
    .venv/bin/python bench/soak.py --minutes 10 --setup redis-pg
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from tcp_proxy import TcpProxy  # noqa: E402  (bench/ holds scripts, not a package)

HOST = "127.0.0.1"  # loopback only
PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
LEVELS = 2
DB_CUT_SECONDS = 4.0
#: 5xx within this long after the cut ends still count as the outage (clients' requests that
#: were already waiting on the dead connection).
OUTAGE_GRACE_SECONDS = 3.0
FINAL = {"succeeded", "failed", "cancelled"}
CANCEL_SHARE = 0.2  # submissions their client cancels, at a random moment of their first 10 s


def spec(seed: int) -> dict[str, Any]:
    """LeNet-300-100 on tiny synthetic data: a few seconds per experiment on one CPU thread,
    with a random_reinit control at each pruned level (offered to the other worker)."""
    return {
        "model": "lenet_300_100",
        "seed": seed,
        "name": f"soak-{seed}",
        "dataset": {
            "name": "synthetic",
            "validation_size": 100,
            "synthetic": {"train_size": 600, "test_size": 100},
        },
        "training": {"iterations": 40, "eval_every": 20, "batch_size": 50},
        "pruning": {"levels": LEVELS},
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- processes


class Processes:
    """Child processes, each in its own process group (a kill takes its pool children too)."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.count = 0

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        self.count += 1
        log = (self.logs / f"{name}-{self.count}.log").open("wb")
        return subprocess.Popen(
            argv,
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def lth(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        return self.start(name, [sys.executable, "-m", "cli.main", *args])

    @staticmethod
    def kill(process: subprocess.Popen[bytes], sig: int = signal.SIGKILL, wait: float = 30) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def serve_worker_group(serve_pid: int) -> int | None:
    """The process group of ``lth serve``'s worker child (found through /proc)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(fields[1]) == serve_pid and b"worker" in cmdline:
            return int(stat.parent.name)
    return None


# --------------------------------------------------------------------------- clients


@dataclass
class Record:
    """What the clients saw (shared; guarded by ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[dict[str, Any]] = field(default_factory=list)
    transport_errors: int = 0
    keys: dict[str, str] = field(default_factory=dict)  # idempotency key -> experiment id
    retries: int = 0
    idempotency_violations: list[str] = field(default_factory=list)
    created: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    cancelled: set[str] = field(default_factory=set)
    downloads: int = 0


class Client(threading.Thread):
    """One API user doing random things until ``stop`` is set."""

    def __init__(
        self,
        n: int,
        url: str,
        key: str,
        record: Record,
        stop: threading.Event,
        *,
        seeds: int,
        active_limit: int,
    ) -> None:
        super().__init__(name=f"client-{n}", daemon=True)
        self.seeds = seeds  # few distinct specs: each needs one clean reference run
        self.active_limit = active_limit  # own active experiments before submitting more
        self.rng = random.Random(1000 + n)
        self.http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        )
        self.record = record
        self.stop = stop
        self.mine: dict[str, str] = {}  # id -> last seen status
        self.cancel_at: dict[str, float] = {}  # id -> when this client will cancel it

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError:
            with self.record.lock:
                self.record.transport_errors += 1
            return None
        with self.record.lock:
            self.record.requests += 1
            self.record.statuses[response.status_code] += 1
            if response.status_code >= 500:
                self.record.server_errors.append(
                    {
                        "t": time.time(),
                        "request": f"{method} {path}",
                        "status": response.status_code,
                        "retry_after": response.headers.get("Retry-After"),
                        "body": response.text[:200],
                    }
                )
        return response

    def run(self) -> None:
        while not self.stop.is_set():
            active = [i for i, s in self.mine.items() if s not in FINAL]
            due = [i for i in active if self.cancel_at.get(i, float("inf")) <= time.monotonic()]
            if due:
                self.cancel(due[0])
            elif len(active) < self.active_limit:
                self.submit()
            else:
                self.act()
            time.sleep(self.rng.uniform(0.1, 0.4))

    def submit(self) -> None:
        key = uuid.uuid4().hex
        body = spec(self.rng.randrange(self.seeds))
        headers = {"Idempotency-Key": key}
        # Seeds repeat on purpose (many experiments of one spec): submitted ?again=true, as a
        # user would, since the API refuses an identical spec otherwise (409 duplicate_spec).
        again_ = {"again": "true"}
        response = self.call("POST", "/experiments", json=body, headers=headers, params=again_)
        if response is None or response.status_code != 201:
            return  # a refused submission (the outage): a real client would retry it
        experiment_id = response.json()["id"]
        with self.record.lock:
            self.record.keys[key] = experiment_id
            self.record.created.add(experiment_id)
        self.mine[experiment_id] = "queued"
        if self.rng.random() < CANCEL_SHARE:
            self.cancel_at[experiment_id] = time.monotonic() + self.rng.uniform(0, 10)
        if self.rng.random() < 0.3:  # the client did not see the answer and retries
            again = self.call("POST", "/experiments", json=body, headers=headers, params=again_)
            if again is not None and again.status_code == 201:
                with self.record.lock:
                    self.record.retries += 1
                    if again.json()["id"] != experiment_id:
                        self.record.idempotency_violations.append(key)

    def act(self) -> None:
        roll = self.rng.random()
        ids = list(self.mine)
        if roll < 0.45 and ids:
            self.poll(self.rng.choice(ids))
        elif roll < 0.6:
            self.call("GET", "/experiments", params={"limit": 20})
        elif roll < 0.9:
            self.download()
        else:
            # Succeeded experiments are mostly kept: the final check compares them with
            # clean runs. Cancelled and failed ones are deleted freely.
            finished = [
                i
                for i, s in self.mine.items()
                if s in FINAL and (s != "succeeded" or self.rng.random() < 0.2)
            ]
            if finished:
                target = self.rng.choice(finished)
                response = self.call("DELETE", f"/experiments/{target}")
                if response is not None and response.status_code == 204:
                    del self.mine[target]
                    with self.record.lock:
                        self.record.deleted.add(target)

    def cancel(self, experiment_id: str) -> None:
        self.cancel_at.pop(experiment_id, None)
        response = self.call("POST", f"/experiments/{experiment_id}/cancel")
        if response is not None and response.status_code == 200:
            self.mine[experiment_id] = response.json()["status"]
            with self.record.lock:
                self.record.cancelled.add(experiment_id)

    def poll(self, experiment_id: str) -> None:
        response = self.call("GET", f"/experiments/{experiment_id}")
        if response is not None and response.status_code == 200:
            self.mine[experiment_id] = response.json()["status"]

    def download(self) -> None:
        done = [i for i, s in self.mine.items() if s == "succeeded"]
        if not done:
            return
        target = self.rng.choice(done)
        path = self.rng.choice(
            [
                "/ticket",
                f"/levels/{self.rng.randint(0, LEVELS)}/mask",
                f"/levels/{self.rng.randint(0, LEVELS)}/metrics",
                "/levels.csv",
            ]
        )
        response = self.call("GET", f"/experiments/{target}{path}")
        if response is not None and response.status_code == 200:
            with self.record.lock:
                self.record.downloads += 1


def download_burst(url: str, key: str, seconds: float, clients: int) -> dict[str, Any]:
    """``clients`` threads downloading tickets, masks, metrics and CSV of the succeeded
    experiments as fast as they can for ``seconds``, while the soak's clients go on (one key:
    its excess is the API's per-key 429, not a 503 for everyone)."""
    headers = {"Authorization": f"Bearer {key}"}
    listed = httpx.get(
        f"{url}/experiments", params={"status": "succeeded", "limit": 50}, headers=headers
    ).json()
    ids = [item["id"] for item in listed.get("items", [])]
    if not ids:
        return {"clients": clients, "downloads": 0, "note": "nothing succeeded yet"}
    lock = threading.Lock()
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    total_bytes = 0
    deadline = time.monotonic() + seconds

    def one(n: int) -> None:
        nonlocal total_bytes
        rng = random.Random(n)
        with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
            while time.monotonic() < deadline:
                tail = rng.choice(
                    ["/ticket", f"/levels/{rng.randint(0, LEVELS)}/mask", "/levels.csv"]
                )
                began = time.perf_counter()
                try:
                    response = http.get(f"/experiments/{rng.choice(ids)}{tail}")
                except httpx.HTTPError as exc:
                    with lock:
                        statuses[type(exc).__name__] += 1
                    continue
                with lock:
                    statuses[str(response.status_code)] += 1
                    if response.status_code == 200:
                        latencies.append(time.perf_counter() - began)
                        total_bytes += len(response.content)

    threads = [threading.Thread(target=one, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 90)
    ms = sorted(x * 1000 for x in latencies)
    return {
        "clients": clients,
        "seconds": seconds,
        "downloads": len(ms),
        "mb": round(total_bytes / 1e6, 1),
        "p50_ms": round(ms[len(ms) // 2], 1) if ms else None,
        "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 1) if ms else None,
        "statuses": dict(sorted(statuses.items())),
    }


# --------------------------------------------------------------------------- set-ups


class Stack:
    """The API, two workers and (redis-pg) Redis and the proxied PostgreSQL."""

    def __init__(self, setup: str, root: Path) -> None:
        self.setup = setup
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.proxy: TcpProxy | None = None
        self.redis: subprocess.Popen[bytes] | None = None
        self.redis_port = 0
        self.pg_name: str | None = None
        self.workers: list[subprocess.Popen[bytes] | None] = [None, None]
        self.api: subprocess.Popen[bytes] | None = None
        env = {k: v for k, v in os.environ.items() if not k.startswith("LTH_")}
        env.update(
            PYTHONPATH=str(REPO),
            CUDA_VISIBLE_DEVICES="",
            OMP_NUM_THREADS="1",
            LTH_DATA_DIR=str(self.data),
            LTH_HEARTBEAT_SECONDS="0.5",
            LTH_HEARTBEAT_TIMEOUT_SECONDS="4",
            LTH_TASK_TIME_LIMIT_SECONDS="300",
            LTH_MAX_ACTIVE_PER_OWNER="1000",
        )
        self.env = env
        self.direct_db_url = f"sqlite:///{self.data / 'lth.db'}"
        if setup == "redis-pg":
            self._start_redis_and_pg()
        self.processes = Processes(self.env, root)

    def _start_redis_and_pg(self) -> None:
        import psycopg2

        self.pg_name = f"lth_soak_{uuid.uuid4().hex[:12]}"
        admin = psycopg2.connect(f"{PG_SERVER}/postgres")
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{self.pg_name}"')
        admin.close()
        self.direct_db_url = f"{PG_SERVER}/{self.pg_name}"
        self.proxy = TcpProxy((HOST, 5432))
        self.proxy.up()
        self.env["LTH_DATABASE_URL"] = (
            f"postgresql://postgres@{HOST}:{self.proxy.port}/{self.pg_name}"
        )
        self.redis_port = free_port()
        self.start_redis()
        self.env["LTH_BROKER_URL"] = f"redis://{HOST}:{self.redis_port}/0"

    def start_redis(self) -> None:
        """A Redis of this run's own (never the shared one), keeping nothing on disk."""
        log = (self.root / "redis.log").open("ab")
        self.redis = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.redis_port), "--bind", HOST),
                *("--save", "", "--appendonly", "no", "--dir", str(self.root)),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.redis_port), 1):
                return
            time.sleep(0.1)
        raise RuntimeError("redis-server did not start")

    def restart_redis(self) -> None:
        """SIGKILL and start again: every queued and unacked message is gone."""
        assert self.redis is not None
        Processes.kill(self.redis)
        time.sleep(1.0)
        self.start_redis()

    def key(self) -> str:
        return subprocess.run(
            [sys.executable, "-m", "cli.main", "keys", "create", "--owner", "soak"],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    def start(self, workers: int = 2) -> None:
        """The API and ``workers`` workers (1 or 2; embedded: ``lth serve`` is the first)."""
        if self.setup == "embedded":
            self.api = self.processes.lth(
                "serve", "serve", "--port", str(self.port), "--gpus", "none"
            )
        else:
            self.api = self.processes.lth("api", "api", "--port", str(self.port))
            self.workers[0] = self.start_worker()
        if workers > 1:
            self.workers[1] = self.start_worker()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.api.poll() is not None:
                raise RuntimeError(f"the API exited; see {self.root}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.3)
        raise RuntimeError("the API never became ready")

    def start_worker(self) -> subprocess.Popen[bytes]:
        return self.processes.lth("worker", "worker", "--gpus", "none", "--loglevel", "INFO")

    def kill_worker(self, which: int) -> bool:
        """SIGKILL worker ``which`` (its whole process group) and start it again."""
        if self.setup == "embedded" and which == 0:
            assert self.api is not None
            group = serve_worker_group(self.api.pid)
            if group is None:
                return False
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
            return True  # `lth serve`'s supervisor restarts it
        process = self.workers[which]
        if process is not None:
            Processes.kill(process)
        time.sleep(0.5)
        self.workers[which] = self.start_worker()
        return True

    def stop(self) -> None:
        running = [p for p in [*self.workers, self.api] if p is not None and p.poll() is None]
        for process in running:  # all at once: each may take seconds to shut down warm
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 8
        for process in running:
            Processes.kill(process, signal.SIGTERM, wait=max(0.1, deadline - time.monotonic()))
        if self.redis is not None:
            Processes.kill(self.redis)
        if self.proxy is not None:
            self.proxy.down()

    def drop_database(self) -> None:
        if self.pg_name is not None:
            import psycopg2

            admin = psycopg2.connect(f"{PG_SERVER}/postgres")
            admin.autocommit = True
            with admin.cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')
            admin.close()


# --------------------------------------------------------------------------- invariants


def reference_runs(root: Path, env: dict[str, str], seeds: set[int]) -> dict[int, Path]:
    """A clean, uninterrupted run of each spec straight through lth_core, in a process set up
    like a worker's (one thread: the same floating-point reduction order)."""
    code = (
        "import json, sys\n"
        "from lth_core.experiment import Experiment\n"
        "from lth_core.spec import parse_spec\n"
        "Experiment(parse_spec(json.loads(sys.argv[1])), sys.argv[2], device='cpu').run()\n"
    )
    out = {}
    for seed in sorted(seeds):
        folder = root / "reference" / str(seed)
        subprocess.run(
            [sys.executable, "-c", code, json.dumps(spec(seed)), str(folder)],
            cwd=REPO,
            env=env,
            check=True,
            timeout=600,
        )
        out[seed] = folder
    return out


def same_results(got: Path, want: Path, levels: int = LEVELS) -> bool:
    """Masks equal tensor for tensor and every run's metrics equal (timings aside)."""
    from safetensors.torch import load_file

    for level in range(levels + 1):
        name = f"levels/{level:03d}"
        a, b = (
            load_file(got / name / "mask.safetensors"),
            load_file(want / name / "mask.safetensors"),
        )
        if a.keys() != b.keys() or not all(bool((a[k] == b[k]).all()) for k in b):
            return False
        for run in sorted((want / name / "runs").glob("*.json")):
            mine = got / name / "runs" / run.name
            if not mine.is_file():
                return False
            x, y = json.loads(run.read_text()), json.loads(mine.read_text())
            x.pop("seconds", None), y.pop("seconds", None)
            if json.dumps(x, sort_keys=True) != json.dumps(y, sort_keys=True):
                return False
    return True


def check_database(stack: Stack, record: Record) -> dict[str, Any]:
    from sqlalchemy import func, select

    from store.db import make_engine
    from store.models import Experiment, Level

    engine = make_engine(stack.direct_db_url)
    with engine.connect() as connection:
        rows = connection.execute(
            select(Experiment.id, Experiment.status, Experiment.spec, Experiment.idempotency_key)
        ).all()
        levels: dict[str, list[int]] = {}
        for experiment_id, level in connection.execute(select(Level.experiment_id, Level.level)):
            levels.setdefault(experiment_id, []).append(level)
        per_key = connection.execute(
            select(Experiment.idempotency_key, func.count())
            .where(Experiment.idempotency_key.is_not(None))
            .group_by(Experiment.idempotency_key)
            .having(func.count() > 1)
        ).all()
    engine.dispose()
    stuck = [r.id for r in rows if r.status not in FINAL]
    lost: list[str] = []
    for r in rows:
        found = sorted(levels.get(r.id, []))
        folder = stack.data / "experiments" / r.id
        on_disk = sorted(
            int(p.parent.name)
            for p in folder.glob("levels/*/summary.json")
            if p.parent.name.isdigit()
        )
        if len(found) != len(set(found)):
            lost.append(f"{r.id}: duplicated levels {found}")
        if found != list(range(len(found))):
            lost.append(f"{r.id}: levels {found} have a gap")
        if r.status == "succeeded" and found != list(range(LEVELS + 1)):
            lost.append(f"{r.id}: succeeded with levels {found}")
        if on_disk != found:
            lost.append(f"{r.id}: rows {found} but summaries on disk {on_disk}")
    succeeded = [r for r in rows if r.status == "succeeded"]
    references = reference_runs(stack.root, stack.env, {int(r.spec["seed"]) for r in succeeded})
    mismatched = [
        r.id
        for r in succeeded
        if not same_results(stack.data / "experiments" / r.id, references[int(r.spec["seed"])])
    ]
    missing_keys = [k for k, i in record.keys.items() if i not in {r.id for r in rows}]
    missing_keys = [k for k in missing_keys if record.keys[k] not in record.deleted]
    return {
        "rows": rows,
        "stuck": stuck,
        "lost": lost,
        "mismatched": mismatched,
        "duplicate_keys": [k for k, _ in per_key],
        "missing_keys": missing_keys,
    }


# --------------------------------------------------------------------------- main


def soak(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="lth-soak-"))
    root.mkdir(parents=True, exist_ok=True)
    stack = Stack(args.setup, root)
    record = Record()
    stop = threading.Event()
    outages: list[tuple[float, float]] = []
    kills = 0
    redis_restarts = 0
    started = time.monotonic()
    duration = args.minutes * 60
    try:
        key = stack.key()  # creates the tables once, before several processes start
        stack.start()
        clients = [
            Client(
                n, stack.url, key, record, stop, seeds=args.seeds, active_limit=args.active_limit
            )
            for n in range(args.clients)
        ]
        for client in clients:
            client.start()
        faults = {"redis": duration * 0.4, "db_cut": duration * 0.6, "burst": duration * 0.75}
        burst: dict[str, Any] = {}
        next_kill = min(args.kill_every, duration * 0.5)
        which = 0
        while (elapsed := time.monotonic() - started) < duration:
            if elapsed >= next_kill:
                if stack.kill_worker(which % 2):
                    kills += 1
                which += 1
                next_kill += args.kill_every
            if args.setup == "redis-pg" and "redis" in faults and elapsed >= faults["redis"]:
                faults.pop("redis")
                stack.restart_redis()
                redis_restarts += 1
            if args.setup == "redis-pg" and "db_cut" in faults and elapsed >= faults["db_cut"]:
                faults.pop("db_cut")
                assert stack.proxy is not None
                begin = time.time()
                stack.proxy.down()
                time.sleep(DB_CUT_SECONDS)
                stack.proxy.up()
                outages.append((begin, time.time() + OUTAGE_GRACE_SECONDS))
            if args.burst_clients and "burst" in faults and elapsed >= faults["burst"]:
                faults.pop("burst")
                burst = download_burst(stack.url, key, args.burst_seconds, args.burst_clients)
            time.sleep(0.2)
        stop.set()
        for client in clients:
            client.join(timeout=90)
        load_done = time.monotonic()
        # Drain: the workers finish what was submitted (no more faults).
        drain_deadline = time.monotonic() + args.drain_seconds
        while time.monotonic() < drain_deadline:
            response = httpx.get(
                f"{stack.url}/experiments",
                params={"status": "queued", "limit": 1},
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            )
            running = httpx.get(
                f"{stack.url}/experiments",
                params={"status": "running", "limit": 1},
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            )
            if response.json()["total"] + running.json()["total"] == 0:
                break
            time.sleep(1.0)
        drained = time.monotonic()
    finally:
        stop.set()
        stack.stop()
    stopped = time.monotonic()
    try:
        checked = check_database(stack, record)
    finally:
        stack.drop_database()
    seconds = {
        "load": round(load_done - started, 1),
        "drain": round(drained - load_done, 1),
        "stop": round(stopped - drained, 1),
        "check": round(time.monotonic() - stopped, 1),
    }

    def during_outage(t: float) -> bool:
        return any(begin <= t <= end for begin, end in outages)

    bad_5xx = [e for e in record.server_errors if not (during_outage(e["t"]) and e["retry_after"])]
    result = {
        "minutes": args.minutes,
        "requests": record.requests,
        "experiments": len(record.created),
        "worker_kills": kills,
        "server_errors": len(bad_5xx),
        "lost_levels": len(checked["lost"]),
        "stuck": len(checked["stuck"]),
        "mismatched": len(checked["mismatched"]),
        "setup": args.setup,
        "outage_5xx": len(record.server_errors) - len(bad_5xx),
        "redis_restarts": redis_restarts,
        "db_cuts": len(outages),
        "idempotent_retries": record.retries,
        "idempotency_violations": len(record.idempotency_violations)
        + len(checked["duplicate_keys"])
        + len(checked["missing_keys"]),
        "succeeded": sum(1 for r in checked["rows"] if r.status == "succeeded"),
        "cancelled": sum(1 for r in checked["rows"] if r.status == "cancelled"),
        "failed": sum(1 for r in checked["rows"] if r.status == "failed"),
        "deleted": len(record.deleted),
        "downloads": record.downloads,
        "transport_errors": record.transport_errors,
        "statuses": dict(sorted(record.statuses.items())),
        "download_burst": burst,
        "seconds": seconds,
    }
    details = {
        "bad_5xx": bad_5xx[:20],
        "lost": checked["lost"][:20],
        "stuck": checked["stuck"][:20],
        "mismatched": checked["mismatched"][:20],
        "failed": [(r.id, r.status) for r in checked["rows"] if r.status == "failed"][:20],
        "folder": str(root),
    }
    print(json.dumps(details, indent=1, default=str), file=sys.stderr)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="Load-and-fault time.")
    parser.add_argument("--setup", choices=("embedded", "redis-pg"), default="embedded")
    parser.add_argument("--clients", type=int, default=4, help="Concurrent API clients.")
    parser.add_argument(
        "--seeds", type=int, default=3, help="Distinct specs (each gets one reference run)."
    )
    parser.add_argument(
        "--active-limit", type=int, default=2, help="A client's active experiments at most."
    )
    parser.add_argument(
        "--kill-every", type=float, default=30.0, help="Seconds between worker SIGKILLs."
    )
    parser.add_argument(
        "--drain-seconds", type=float, default=600.0, help="Longest wait for the queue to empty."
    )
    parser.add_argument(
        "--burst-clients",
        type=int,
        default=16,
        help="Download burst at 3/4 of the load time: threads downloading at once (0: none).",
    )
    parser.add_argument("--burst-seconds", type=float, default=15.0, help="Its length.")
    parser.add_argument("--out", help="Folder for data and logs (default: a temporary one).")
    args = parser.parse_args(argv)
    result = soak(args)
    print(json.dumps(result))
    failed = result["server_errors"] or result["lost_levels"] or result["stuck"]
    failed = failed or result["mismatched"] or result["idempotency_violations"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
