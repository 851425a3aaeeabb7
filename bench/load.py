"""Loopback load test: does polling the API slow training down?

Starts `lth serve` (API + one CPU worker, embedded broker, SQLite) on 127.0.0.1 in a throwaway
data directory, with one API key. Then trains identical experiments (different seeds), in turn:

  - idle:   the experiment trains with the API idle;
  - loaded: it trains while clients send GET /experiments/{id} and GET /experiments
            (alternating) at a fixed rate, open loop (a slow answer does not slow the senders);

--rounds idle/loaded pairs and a final idle run, so that drift (other tenants, thermal) shows
up in the spread of the idle runs instead of passing as the cost of the load.

Training speed is the engine's own measure: iterations / seconds summed over every run's
metrics file. The load is bounded in time (--max-seconds per phase) and count (rate x time),
and goes to 127.0.0.1 only. Prints a JSON report (and writes it with --output).

    .venv/bin/python bench/load.py --rate 50 --iterations 3000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"  # never anything else: this is a loopback test


def spec(seed: int, iterations: int) -> dict[str, Any]:
    """LeNet-300-100 on synthetic data: the paper's model, no dataset download needed."""
    return {
        "model": "lenet_300_100",
        "seed": seed,
        "dataset": {
            "name": "synthetic",
            "validation_size": 500,
            "synthetic": {"train_size": 5000, "test_size": 1000},
        },
        "training": {"iterations": iterations, "eval_every": max(100, iterations // 10)},
        "pruning": {"levels": 1},
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_server(data_dir: Path, port: int, train_threads: int) -> tuple[subprocess.Popen, str]:
    """An API key, then `lth serve`; returns the server process and the key."""
    env = {
        **os.environ,
        "LTH_DATA_DIR": str(data_dir),
        "OMP_NUM_THREADS": str(train_threads),  # the worker's torch threads
        "MKL_NUM_THREADS": str(train_threads),
    }
    env.pop("LTH_DATABASE_URL", None)
    env.pop("LTH_BROKER_URL", None)
    lth = [sys.executable, "-m", "cli.main"]
    key = create_key(data_dir)
    server = subprocess.Popen(
        [*lth, "serve", "--host", HOST, "--port", str(port), "--gpus", "none"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(data_dir / "serve.log", "w"),  # noqa: SIM115 - lives as long as the server
        start_new_session=True,
    )
    return server, key


def create_key(data_dir: Path) -> str:
    """What `lth keys create --owner bench` does, in-process, for the bench's database."""
    sys.path.insert(0, str(REPO))
    from store import api_keys
    from store.db import dispose_engines, session_scope
    from store.settings import Settings

    with session_scope(Settings(data_dir=data_dir)) as session:
        _, key = api_keys.create_key(session, "bench")
    dispose_engines()
    return key


def wait_ready(client: httpx.Client, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError("the server did not become ready")


def training_rate(data_dir: Path, experiment_id: str) -> dict[str, float]:
    """Iterations per second over every run of the experiment, from its metrics files."""
    iterations = seconds = 0.0
    for path in (data_dir / "experiments" / experiment_id / "levels").glob("*/runs/*.json"):
        run = json.loads(path.read_text())
        iterations += run["iterations"]
        seconds += run["seconds"]
    return {"iterations": iterations, "seconds": seconds, "rate": iterations / seconds}


async def hammer(
    base_url: str, key: str, experiment_id: str, rate: float, stop: asyncio.Event, limit: int
) -> dict[str, Any]:
    """Open-loop GETs at ``rate`` per second until ``stop`` (or ``limit`` requests)."""
    latencies: list[float] = []
    errors = 0
    headers = {"Authorization": f"Bearer {key}"}
    paths = [f"/experiments/{experiment_id}", "/experiments?limit=20"]
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, limits=limits, timeout=10
    ) as client:

        async def one(path: str) -> None:
            nonlocal errors
            start = time.perf_counter()
            try:
                response = await client.get(path)
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - start)
            errors += not ok

        tasks = []
        began = time.perf_counter()
        sent = 0
        while not stop.is_set() and sent < limit:
            tasks.append(asyncio.create_task(one(paths[sent % 2])))
            sent += 1
            delay = began + sent / rate - time.perf_counter()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        elapsed = time.perf_counter() - began
        await asyncio.gather(*tasks)
    ms = sorted(x * 1000 for x in latencies)
    return {
        "target_rate": rate,
        "requests": len(ms),
        "errors": errors,
        "seconds": round(elapsed, 2),
        "held_rate": round(len(ms) / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(statistics.median(ms), 2) if ms else None,
        "p99_ms": round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 2) if ms else None,
        "max_ms": round(ms[-1], 2) if ms else None,
    }


def run_one(
    client: httpx.Client,
    data_dir: Path,
    seed: int,
    iterations: int,
    max_seconds: float,
    load: tuple[str, str, float] | None,
) -> dict[str, Any]:
    """Submits one experiment and waits for it, under load if ``load`` is (url, key, rate)."""
    experiment_id = client.post("/experiments", json=spec(seed, iterations)).json()["id"]
    stop = asyncio.Event()
    result: dict[str, Any] = {}

    async def watch() -> None:
        deadline = time.monotonic() + max_seconds
        while time.monotonic() < deadline:
            status = (await asyncio.to_thread(client.get, f"/experiments/{experiment_id}")).json()
            if status["status"] in ("succeeded", "failed", "cancelled"):
                result["status"] = status["status"]
                break
            await asyncio.sleep(0.5)
        else:
            result["status"] = "timeout"
        stop.set()

    async def both() -> None:
        jobs = [watch()]
        if load is not None:
            url, key, rate = load
            limit = int(rate * max_seconds)

            async def loaded() -> None:
                result["load"] = await hammer(url, key, experiment_id, rate, stop, limit)

            jobs.append(loaded())
        await asyncio.gather(*jobs)

    asyncio.run(both())
    if result["status"] != "succeeded":
        raise RuntimeError(f"experiment {experiment_id} ended {result['status']}")
    result["training"] = training_rate(data_dir, experiment_id)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=50.0, help="GET requests per second.")
    parser.add_argument("--iterations", type=int, default=3000, help="Per run (3 runs).")
    parser.add_argument("--train-threads", type=int, default=1, help="Worker torch threads.")
    parser.add_argument("--max-seconds", type=float, default=240.0, help="Cap per phase.")
    parser.add_argument("--rounds", type=int, default=2, help="Idle/loaded pairs.")
    parser.add_argument("--output", type=Path, help="Also write the JSON report here.")
    args = parser.parse_args()
    if not 0 < args.rate <= 2000:
        parser.error("--rate must be in (0, 2000]")

    with tempfile.TemporaryDirectory(prefix="lth-load-") as tmp:
        data_dir = Path(tmp)
        port = free_port()
        server, key = start_server(data_dir, port, args.train_threads)
        url = f"http://{HOST}:{port}"
        try:
            with httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30
            ) as client:
                wait_ready(client)
                # Alternate idle and loaded runs, ending idle: a machine whose speed drifts
                # (other tenants, thermal) then shows up in the spread, not as "load".
                plan = [("baseline", None), ("load", (url, key, args.rate))] * args.rounds
                plan.append(("baseline", None))
                phases: list[tuple[str, dict[str, Any]]] = []
                for seed, (name, load) in enumerate(plan):
                    result = run_one(
                        client, data_dir, seed, args.iterations, args.max_seconds, load
                    )
                    phases.append((name, result))
                    print(f"{name}: {json.dumps(result)}", file=sys.stderr)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
    idle = [r["training"]["rate"] for name, r in phases if name == "baseline"]
    loaded = [r["training"]["rate"] for name, r in phases if name == "load"]
    loads = [r["load"] for name, r in phases if name == "load"]
    base, under = statistics.median(idle), statistics.median(loaded)
    report = {
        "command": " ".join(["python", *sys.argv]),
        "cpu_count": os.cpu_count(),
        "train_threads": args.train_threads,
        "requests": {
            "target_rate": args.rate,
            "requests": sum(x["requests"] for x in loads),
            "errors": sum(x["errors"] for x in loads),
            "held_rate": [x["held_rate"] for x in loads],
            "p50_ms": [x["p50_ms"] for x in loads],
            "p99_ms": [x["p99_ms"] for x in loads],
        },
        "training_it_per_s": {
            "idle_runs": [round(x, 1) for x in idle],
            "loaded_runs": [round(x, 1) for x in loaded],
        },
        "training_rate_change_percent": round(100 * (under - base) / base, 1),
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
