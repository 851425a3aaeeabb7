"""The API's capacity curve on loopback, with a worker training beside it.

Starts `lth api` (``--workers`` 1 and 2 by default, one after the other) and one `lth worker`
(CPU, ``--train-threads`` torch threads, embedded broker, SQLite) in a throwaway data
directory with one API key, and submits one long LeNet-300-100 experiment on synthetic data
that trains through the whole measurement. Then for each offered rate (``--rates``, requests
per second, open loop: a slow answer does not slow the senders) it measures, back to back:

  - idle:   ``--idle-seconds`` with no requests: the training rate;
  - loaded: ``--seconds`` of GETs at the offered rate, half ``GET /experiments/{id}`` and half
            ``GET /experiments?limit=20``, each sending the ETag of its last answer as
            ``If-None-Match`` (what `lth submit --wait`, the web view and scripts do):
            requests held (200 + 304 per second), p50/p99/max latency of those, 304s, shed
            (503 with Retry-After, answered at once), errors (timeouts, refused connections),
            and the training rate meanwhile.

The training rate is the worker's own progress: iterations between two progress records over
the time between them (``progress.iteration`` and ``updated_at`` in the database), so API
time never counts as training time. Everything is bounded: ``--seconds`` per point, at most
``rate x seconds`` requests, a 10 s client timeout, loopback only. The client is
bench/rawhttp.py (keep-alive connections, little CPU of its own). Prints a JSON report (and
writes it with ``--output``); ``--markdown`` prints the table for bench/LOAD.md.

    .venv/bin/python bench/load.py --output /tmp/load.json --markdown
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
HOST = "127.0.0.1"  # never anything else: this is a loopback test
MAX_CONNECTIONS = 256


def spec(iterations: int) -> dict[str, Any]:
    """LeNet-300-100 on synthetic data, one long run: it trains through every point."""
    return {
        "model": "lenet_300_100",
        "dataset": {
            "name": "synthetic",
            "validation_size": 500,
            "synthetic": {"train_size": 5000, "test_size": 1000},
        },
        "training": {"iterations": iterations, "eval_every": 100},
        "pruning": {"levels": 1},
        "controls": [],
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def create_key(data_dir: Path) -> str:
    from store import api_keys
    from store.db import dispose_engines, session_scope
    from store.settings import Settings

    with session_scope(Settings(data_dir=data_dir)) as session:
        _, key = api_keys.create_key(session, "bench")
    dispose_engines()
    return key


def start(argv: list[str], env: dict[str, str], log: Path, repo: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", *argv],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(log, "w"),  # lives as long as the process
        start_new_session=True,
    )


def stop(process: subprocess.Popen) -> None:
    with_group = os.getpgid(process.pid) if process.poll() is None else None
    if with_group is not None:
        os.killpg(with_group, signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def wait_until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (httpx.TransportError, sqlite3.Error):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


def progress(db: Path, experiment_id: str) -> tuple[int, float, str] | None:
    """(iteration, time of that record, run) of the experiment's latest progress record."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as connection:
        row = connection.execute(
            "SELECT progress, updated_at FROM experiments WHERE id = ?", (experiment_id,)
        ).fetchone()
    if row is None or not row[0]:
        return None
    p = json.loads(row[0])
    if p.get("iteration") is None:
        return None
    at = datetime.fromisoformat(row[1]).timestamp()
    return int(p["iteration"]), at, f"{p.get('level')}/{p.get('kind')}"


def training_rate(db: Path, experiment_id: str, seconds: float) -> float | None:
    """Iterations per second of the run training now, over about ``seconds``."""
    first = progress(db, experiment_id)
    time.sleep(seconds)
    last = progress(db, experiment_id)
    if first is None or last is None or first[2] != last[2] or last[1] <= first[1]:
        return None
    return (last[0] - first[0]) / (last[1] - first[1])


async def offered_load(
    port: int, key: str, experiment_id: str, rate: float, seconds: float
) -> dict[str, Any]:
    """Open-loop GETs at ``rate`` for ``seconds`` over up to MAX_CONNECTIONS connections."""
    from bench.rawhttp import Connection

    paths = [f"/experiments/{experiment_id}", "/experiments?limit=20"]
    etags: dict[str, str] = {}
    idle: list[Connection] = []
    opened = 0
    latencies: list[float] = []
    counts: Counter[str] = Counter()
    available = asyncio.Semaphore(MAX_CONNECTIONS)

    async def one(path: str) -> None:
        nonlocal opened
        async with available:
            if idle:
                connection = idle.pop()
            else:
                opened += 1
                connection = Connection(HOST, port, {"Authorization": f"Bearer {key}"})
            headers = {"If-None-Match": etags[path]} if path in etags else {}
            began = time.perf_counter()
            try:
                status, got, _ = await asyncio.wait_for(connection.get(path, headers), 10.0)
            except (TimeoutError, ConnectionError, OSError):
                counts["errors"] += 1
                await connection.close()
                return
            idle.append(connection)
            took = time.perf_counter() - began
            if status in (200, 304):
                latencies.append(took)
                counts[str(status)] += 1
                if got.get("etag"):
                    etags[path] = got["etag"]
            elif status == 503:
                counts["shed"] += 1
                counts["shed_ms_max"] = max(counts["shed_ms_max"], int(1000 * took))
            else:
                counts["errors"] += 1

    tasks = []
    began = time.perf_counter()
    total = int(rate * seconds)
    for sent in range(total):
        delay = began + sent / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(paths[sent % 2])))
    sending = time.perf_counter() - began
    await asyncio.gather(*tasks)
    for connection in idle:
        await connection.close()
    ms = sorted(1000 * x for x in latencies)
    answered = counts["200"] + counts["304"]
    return {
        "offered": rate,
        "sent": total,
        "held": round(answered / max(sending, seconds), 1),
        "p50_ms": round(statistics.median(ms), 1) if ms else None,
        "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 1) if ms else None,
        "max_ms": round(ms[-1], 1) if ms else None,
        "ok_200": counts["200"],
        "not_modified_304": counts["304"],
        "shed_503": counts["shed"],
        "shed_max_ms": counts["shed_ms_max"] if counts["shed"] else None,
        "errors": counts["errors"],
        "connections": opened,
    }


def curve(args: argparse.Namespace, workers: int) -> dict[str, Any]:
    """One API configuration: servers up, the experiment training, every offered rate."""
    with tempfile.TemporaryDirectory(prefix="lth-load-") as tmp:
        data_dir = Path(tmp)
        env = {
            **os.environ,
            "LTH_DATA_DIR": str(data_dir),
            "PYTHONPATH": str(args.repo),
            "LTH_TORCH_THREADS": str(args.train_threads),
            "OMP_NUM_THREADS": str(args.train_threads),
            "MKL_NUM_THREADS": str(args.train_threads),
        }
        for name in ("LTH_DATABASE_URL", "LTH_BROKER_URL"):
            env.pop(name, None)
        key = create_key(data_dir)
        port = free_port()
        api_argv = ["api", "--host", HOST, "--port", str(port), "--log-level", "warning"]
        if workers > 1:
            api_argv += ["--workers", str(workers)]
        api = start(api_argv, env, data_dir / "api.log", args.repo)
        worker = start(["worker", "--gpus", "none"], env, data_dir / "worker.log", args.repo)
        url = f"http://{HOST}:{port}"
        db = data_dir / "lth.db"
        points = []
        try:
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as c:
                wait_until(lambda: c.get("/healthz").status_code == 200, 60, "the API")
                experiment_id = c.post("/experiments", json=spec(args.iterations)).json()["id"]
                wait_until(lambda: progress(db, experiment_id), 120, "training to start")
            for rate in args.rates:
                idle = training_rate(db, experiment_id, args.idle_seconds)
                first = progress(db, experiment_id)
                result = asyncio.run(offered_load(port, key, experiment_id, rate, args.seconds))
                last = progress(db, experiment_id)
                loaded = None
                if first and last and first[2] == last[2] and last[1] > first[1]:
                    loaded = (last[0] - first[0]) / (last[1] - first[1])
                result["train_idle_it_s"] = round(idle, 1) if idle else None
                result["train_loaded_it_s"] = round(loaded, 1) if loaded else None
                result["train_change_percent"] = (
                    round(100 * (loaded - idle) / idle, 1) if idle and loaded else None
                )
                print(json.dumps({"workers": workers, **result}), file=sys.stderr, flush=True)
                points.append(result)
        finally:
            stop(api)
            stop(worker)
    return {"api_workers": workers, "points": points}


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "| API processes | offered req/s | held req/s | p50 / p99 / max ms | 304s | shed (503) "
        "| errors | training it/s idle → loaded (change) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for config in report["curves"]:
        for p in config["points"]:
            shed = f"{p['shed_503']}" + (f" (≤ {p['shed_max_ms']} ms)" if p["shed_503"] else "")
            change = p["train_change_percent"]
            lines.append(
                f"| {config['api_workers']} | {p['offered']:g} | {p['held']} "
                f"| {p['p50_ms']} / {p['p99_ms']} / {p['max_ms']} | {p['not_modified_304']} "
                f"| {shed} | {p['errors']} | {p['train_idle_it_s']} → {p['train_loaded_it_s']}"
                f" ({'n/a' if change is None else f'{change:+.1f} %'}) |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="50,100,200,400,800", help="Offered req/s.")
    parser.add_argument("--workers", default="1,2", help="API process counts, one curve each.")
    parser.add_argument("--seconds", type=float, default=4.0, help="Load per point.")
    parser.add_argument("--idle-seconds", type=float, default=3.0, help="Idle before each point.")
    parser.add_argument("--iterations", type=int, default=200_000, help="Of the training run.")
    parser.add_argument("--train-threads", type=int, default=1, help="Worker torch threads.")
    parser.add_argument("--repo", type=Path, default=REPO, help="Serve from this checkout.")
    parser.add_argument("--output", type=Path, help="Also write the JSON report here.")
    parser.add_argument("--markdown", action="store_true", help="Print the LOAD.md table.")
    args = parser.parse_args()
    args.rates = [float(r) for r in args.rates.split(",")]
    if not all(0 < r <= 2000 for r in args.rates) or not 0 < args.seconds <= 30:
        parser.error("rates in (0, 2000], seconds in (0, 30]")
    report = {
        "command": " ".join(["python", *sys.argv]),
        "cpu_count": os.cpu_count(),
        "train_threads": args.train_threads,
        "curves": [curve(args, int(w)) for w in args.workers.split(",")],
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    if args.markdown:
        print(markdown(report))


if __name__ == "__main__":
    main()
