"""Issue 24, fairness: one key cannot take every request slot or every event stream of an
API process; it gets 429 for its own excess while others are still admitted."""

from __future__ import annotations

import asyncio

import httpx

from service.admission import AdmissionMiddleware


def _app(release: asyncio.Event):
    async def app(scope, receive, send) -> None:  # a slow body / a long stream
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def _run(path: str, limits: dict[str, int]) -> tuple[list[int], int, int]:
    """Key A opens five requests to ``path`` at once; then key B and an open-mode caller one
    each. Returns A's statuses, B's and the anonymous one's."""

    async def scenario() -> tuple[list[int], int, int]:
        release = asyncio.Event()
        middleware = AdmissionMiddleware(_app(release), retry_after=1, **limits)
        transport = httpx.ASGITransport(app=middleware)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            a = [
                asyncio.create_task(c.get(path, headers={"Authorization": "Bearer A"}))
                for _ in range(5)
            ]
            await asyncio.sleep(0.05)
            b = asyncio.create_task(c.get(path, headers={"Authorization": "Bearer B"}))
            anonymous = asyncio.create_task(c.get(path))
            await asyncio.sleep(0.05)
            release.set()
            done = [r.status_code for r in await asyncio.gather(*a)]
            refused = [r for r in await asyncio.gather(*a) if r.status_code == 429]
            assert all(r.headers["Retry-After"] == "1" for r in refused)
            return sorted(done), (await b).status_code, (await anonymous).status_code

    return asyncio.run(scenario())


def test_one_key_cannot_take_every_request_slot() -> None:
    """Found: 40 slow-body POSTs with one key made another owner's GET a 503 overloaded."""
    limits = {"max_in_flight": 8, "max_streams": 8, "per_key_in_flight": 3}
    a, b, anonymous = _run("/experiments", limits)
    assert a == [200, 200, 200, 429, 429]
    assert b == 200 and anonymous == 200


def test_one_key_cannot_take_every_event_stream() -> None:
    """Found: 64 event streams of one key refused everyone else's."""
    path = "/experiments/" + "0" * 32 + "/events"
    limits = {"max_in_flight": 8, "max_streams": 8, "per_key_streams": 2}
    a, b, anonymous = _run(path, limits)
    assert a == [200, 200, 429, 429, 429]
    assert b == 200 and anonymous == 200


def test_the_process_limit_still_sheds_with_503_first() -> None:
    limits = {"max_in_flight": 2, "max_streams": 2, "per_key_in_flight": 2}
    a, b, anonymous = _run("/experiments", limits)
    assert a == [200, 200, 503, 503, 503] and b == 503 and anonymous == 503
