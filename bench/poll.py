"""Polling throughput of the API alone: N async clients hammering one route for S seconds.

Starts `lth api` (no worker) on 127.0.0.1 in a throwaway data directory with one API key, a
finished experiment (a few levels recorded as a worker records them) and, for the list route,
``--list-size`` more experiments. Then ``--clients`` closed-loop httpx clients send GET requests
to ``--route`` (``experiment``, ``list``, ``missing`` or ``healthz``) for ``--seconds``; with
``--etag`` each client sends the ETag of its previous answer (``If-None-Match``), as a poller
following a job does. Prints one JSON line per concurrency: req/s, p50/p99/max, status counts.

    .venv/bin/python bench/poll.py --route experiment --clients 1,8,32 --seconds 8
    .venv/bin/python bench/poll.py --workers 2 --clients 8,64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
HOST = "127.0.0.1"  # loopback only

SUMMARY = {
    "weights_remaining": 0.8,
    "early_stop_iteration": 40,
    "early_stop_val_loss": 0.3,
    "early_stop_test_accuracy": 0.9,
    "final_test_accuracy": 0.89,
    "controls": {
        "random_reinit": {
            "weights_remaining": 0.8,
            "early_stop_iteration": 30,
            "early_stop_val_loss": 0.4,
            "early_stop_test_accuracy": 0.85,
            "final_test_accuracy": 0.84,
        }
    },
    "layers": {
        "fc1.weight": {"remaining": 188160, "total": 235200},
        "fc2.weight": {"remaining": 24000, "total": 30000},
        "fc3.weight": {"remaining": 900, "total": 1000},
    },
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def seed_database(data_dir: Path, levels: int, list_size: int) -> tuple[str, str]:
    """One API key, one experiment with ``levels`` finished levels and ``list_size`` queued
    ones, written through the store as the API and a worker would. Returns (key, id)."""
    sys.path.insert(0, str(REPO))
    from lth_core.spec import parse_spec
    from store import api_keys, claims, experiments
    from store.db import dispose_engines, session_scope
    from store.settings import Settings

    settings = Settings(data_dir=data_dir)
    spec = parse_spec(
        {"model": "lenet_300_100", "dataset": {"name": "fashion_mnist"}, "pruning": {"levels": 10}}
    ).model_dump(mode="json")
    with session_scope(settings) as session:
        _, key = api_keys.create_key(session, "bench")
        experiment, _ = experiments.create(session, spec, owner="bench")
        experiment_id = experiment.id
    with session_scope(settings) as session:
        claims.claim(
            session,
            experiment_id,
            "bench",
            timeout_seconds=settings.heartbeat_timeout_seconds,
            max_attempts=1,
        )
        for level in range(levels):
            experiments.record_level(session, experiment_id, level, dict(SUMMARY))
        experiments.record_progress(
            session,
            experiment_id,
            {
                "level": levels,
                "kind": "ticket",
                "iteration": 1200,
                "iterations": 50000,
                "metrics": {"iteration": 1200, "val_loss": 0.31, "test_accuracy": 0.88},
            },
        )
        for _ in range(list_size):
            experiments.create(session, spec, owner="bench")
    dispose_engines()
    return key, experiment_id


def start_api(
    data_dir: Path, port: int, workers: int, extra_env: dict[str, str], repo: Path = REPO
) -> subprocess.Popen:
    env = {**os.environ, "LTH_DATA_DIR": str(data_dir), "PYTHONPATH": str(repo), **extra_env}
    env.pop("LTH_DATABASE_URL", None)
    env.pop("LTH_BROKER_URL", None)
    argv = [
        sys.executable,
        "-m",
        "cli.main",
        "api",
        "--host",
        HOST,
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    if workers > 1:
        argv += ["--workers", str(workers)]
    return subprocess.Popen(
        argv,
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(data_dir / "api.log", "w"),  # lives as long as the server
        start_new_session=True,
    )


def cpu_seconds(root: int) -> float:
    """User + system CPU seconds of process ``root`` and its descendants (Linux /proc), so
    that a noisy shared machine still gives the API's cost per request."""
    ticks = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry.name), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        times[pid] = (int(fields[11]) + int(fields[12])) / ticks
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += times.get(pid, 0.0)
        todo.extend(children.get(pid, []))
    return total


def wait_ready(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the API did not start")


def stop(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)


async def hammer(
    url: str, key: str, path: str, clients: int, seconds: float, etag: bool, timeout: float
) -> dict[str, Any]:
    """``clients`` closed-loop clients (each sends its next request when the last is answered),
    each on its own keep-alive connection (bench/rawhttp.py: a client that costs little CPU)."""
    from bench.rawhttp import Connection

    host, port = url.removeprefix("http://").split(":")
    latencies: list[float] = []
    answered: list[float] = []  # 200 and 304 only: what a shed request costs is not in it
    statuses: Counter[str] = Counter()
    deadline = time.perf_counter() + seconds

    async def one_client() -> None:
        connection = Connection(host, int(port), {"Authorization": f"Bearer {key}"})
        tag: str | None = None
        try:
            while time.perf_counter() < deadline:
                headers = {"If-None-Match": tag} if etag and tag else {}
                start = time.perf_counter()
                try:
                    status, got, _ = await asyncio.wait_for(connection.get(path, headers), timeout)
                    statuses[str(status)] += 1
                    tag = got.get("etag") or tag
                    if status in (200, 304):
                        answered.append(time.perf_counter() - start)
                except (TimeoutError, ConnectionError, OSError) as exc:
                    statuses[type(exc).__name__] += 1
                    await connection.close()
                latencies.append(time.perf_counter() - start)
        finally:
            await connection.close()

    began = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(clients)))
    elapsed = time.perf_counter() - began
    ms = sorted(x * 1000 for x in latencies)
    ok = statuses.get("200", 0) + statuses.get("304", 0)
    return {
        "clients": clients,
        "requests": len(ms),
        "req_per_s": round(ok / elapsed, 1),
        "p50_ms": round(statistics.median(ms), 1) if ms else None,
        "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 1) if ms else None,
        "max_ms": round(ms[-1], 1) if ms else None,
        "answered_p99_ms": _p99(answered),
        "statuses": dict(statuses),
    }


def _p99(seconds: list[float]) -> float | None:
    ms = sorted(x * 1000 for x in seconds)
    return round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 1) if ms else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--route", choices=["experiment", "list", "missing", "healthz"], default="experiment"
    )
    parser.add_argument("--clients", default="1,8,32", help="Comma-separated concurrencies.")
    parser.add_argument("--seconds", type=float, default=8.0, help="Per concurrency.")
    parser.add_argument("--levels", type=int, default=5, help="Finished levels of the experiment.")
    parser.add_argument("--list-size", type=int, default=50, help="Experiments in the list.")
    parser.add_argument("--etag", action="store_true", help="Send If-None-Match.")
    parser.add_argument("--workers", type=int, default=1, help="API processes (lth api --workers).")
    parser.add_argument("--timeout", type=float, default=30.0, help="Client timeout, seconds.")
    parser.add_argument(
        "--repo",
        type=Path,
        default=REPO,
        help="Serve the API from this checkout (e.g. a worktree of the code before a change), "
        "to compare two versions in one run.",
    )
    args = parser.parse_args()
    concurrencies = [int(c) for c in args.clients.split(",")]
    if not all(1 <= c <= 256 for c in concurrencies) or not 0 < args.seconds <= 60:
        parser.error("clients in 1..256, seconds in (0, 60]")

    with tempfile.TemporaryDirectory(prefix="lth-poll-") as tmp:
        data_dir = Path(tmp)
        key, experiment_id = seed_database(data_dir, args.levels, args.list_size)
        path = {
            "experiment": f"/experiments/{experiment_id}",
            "list": "/experiments?limit=50",
            "missing": f"/experiments/{'0' * 32}",
            "healthz": "/healthz",
        }[args.route]
        port = free_port()
        url = f"http://{HOST}:{port}"
        server = start_api(data_dir, port, args.workers, {}, args.repo)
        try:
            wait_ready(url)
            asyncio.run(hammer(url, key, path, 2, 1.0, args.etag, args.timeout))  # warm up
            for clients in concurrencies:
                cpu = cpu_seconds(server.pid)
                result = asyncio.run(
                    hammer(url, key, path, clients, args.seconds, args.etag, args.timeout)
                )
                answered = sum(v for k, v in result["statuses"].items() if k.isdigit())
                result["server_cpu_ms_per_request"] = round(
                    1000 * (cpu_seconds(server.pid) - cpu) / max(1, answered), 2
                )
                print(
                    json.dumps(
                        {
                            "repo": str(args.repo),
                            "route": args.route,
                            "workers": args.workers,
                            "etag": args.etag,
                            **result,
                        }
                    ),
                    flush=True,
                )
        finally:
            stop(server)


if __name__ == "__main__":
    main()
