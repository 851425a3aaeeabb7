"""Where the time of one `GET /experiments/{id}` goes: the app in process, profiled.

Builds the app over a throwaway SQLite database (one API key, one experiment with
``--levels`` finished levels), sends ``--requests`` sequential requests through httpx's ASGI
transport, first unprofiled (wall time per request), then under cProfile in every thread
(the event loop and the thread pool that runs synchronous code). Prints the wall time per
request and, per request, the cumulative time of the steps that matter (authentication, the
open-mode rule, the session, the query, building and validating the response, middleware,
thread hops), then the top functions. Profiling inflates every figure; compare the shares.

    .venv/bin/python bench/profile_request.py --requests 300
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import pstats
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# (label, substring of "file:function" in pstats keys); cumulative time per request.
STEPS = [
    ("whole request (starlette app)", "applications.py:__call__"),
    ("middleware (body limit)", "body_limit.py:__call__"),
    ("dependency solving (fastapi)", "dependencies/utils.py:solve_dependencies"),
    ("thread hops (anyio run_sync)", "to_thread.py:run_sync"),
    ("authentication (get_principal)", "auth.py:get_principal"),
    ("  key lookup (api_keys.authenticate)", "api_keys.py:authenticate"),
    ("  open-mode rule (api_keys.any_active)", "api_keys.py:any_active"),
    ("session set-up (deps.get_session)", "deps.py:get_session"),
    ("experiment query, ORM (experiments.get)", "store/experiments.py:get"),
    ("experiment read, fast path (service.reads)", "reads.py:experiment_response"),
    ("  key check, fast path (reads.principal_on)", "reads.py:principal_on"),
    ("  one SQL statement (Connection.execute)", "base.py:execute"),
    ("building the response (presenters)", "presenters.py:experiment_out"),
    ("response validation (fastapi serialize)", "routing.py:serialize_response"),
    ("connection checkout (pool)", "pool/base.py:connect"),
    ("BEGIN/COMMIT/ROLLBACK", "base.py:_rollback_impl"),
]


def seed(data_dir: Path, levels: int, list_size: int = 0) -> tuple[str, str]:
    from bench.poll import seed_database

    return seed_database(data_dir, levels, list_size)


async def drive(app, key: str, path: str, n: int) -> float:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://127.0.0.1", headers={"Authorization": f"Bearer {key}"}
    ) as client:
        began = time.perf_counter()
        for _ in range(n):
            response = await client.get(path)
            assert response.status_code == 200, response.text
        return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--levels", type=int, default=5)
    parser.add_argument("--route", choices=["experiment", "list"], default="experiment")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="lth-prof-") as tmp:
        data_dir = Path(tmp)
        key, experiment_id = seed(data_dir, args.levels, 49 if args.route == "list" else 0)
        from service.main import create_app
        from store.settings import Settings

        app = create_app(Settings(data_dir=data_dir))
        path = (
            f"/experiments/{experiment_id}"
            if args.route == "experiment"
            else "/experiments?limit=50"
        )
        asyncio.run(drive(app, key, path, 50))  # warm up: engine, caches, thread pool
        wall = asyncio.run(drive(app, key, path, args.requests))

        profiles: list[cProfile.Profile] = []
        lock = threading.Lock()

        def start_in_thread(*_a: object) -> None:  # first event in a new thread: profile it
            profile = cProfile.Profile()
            with lock:
                profiles.append(profile)
            profile.enable()

        threading.setprofile(start_in_thread)
        main_profile = cProfile.Profile()
        main_profile.enable()
        profiled = asyncio.run(drive(app, key, path, args.requests))
        main_profile.disable()
        threading.setprofile(None)  # type: ignore[arg-type]
        for p in profiles:
            p.disable()

    stream = io.StringIO()
    stats = pstats.Stats(main_profile, stream=stream)
    for p in profiles:
        with contextlib.suppress(TypeError):  # a thread that never ran profiled code
            stats.add(p)
    n = args.requests
    print(
        f"GET {args.route}: {1000 * wall / n:.2f} ms per request unprofiled "
        f"({n / wall:.0f} req/s, one client, in process); {1000 * profiled / n:.2f} ms profiled"
    )
    print("cumulative ms per request (profiled; nested steps overlap):")
    for label, needle in STEPS:
        total = 0.0
        calls = 0
        for (file, _line, func), (_cc, nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
            if f"{file}:{func}".endswith(needle) or (
                f"{file}:{func}".find(needle) >= 0 and needle.endswith(func)
            ):
                total += ct
                calls += nc
        if calls:
            print(f"  {label:45s} {1000 * total / n:7.2f} ms  ({calls / n:.1f} calls)")
    stats.sort_stats("tottime").print_stats(args.top)
    lines = stream.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    print("\n".join(lines[start : start + args.top + 1]))


if __name__ == "__main__":
    main()
