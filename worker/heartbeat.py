"""The worker's one way to hold a lease while working: a heartbeat thread and :func:`held`.

Both leases (an experiment's next level, one control run; see store.lease) are held the same
way: :func:`held` starts a :class:`Heartbeat` that beats the lease, and turns whatever stops
the work into one of two things: :class:`LeaseLost` when a beat found another holder (stop
without writing anything), or the original exception after ``on_error`` gave the lease back.

Training holds the GIL in long stretches of Python between kernels, but releases it during
every tensor op and I/O, so a plain daemon thread gets to run often enough for beats measured
in seconds. The thread never raises: a database that is briefly unreachable costs a missed
beat, and only a beat that reaches the database and finds the claim gone marks it lost.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """Another worker took the lease over: stop without publishing or recording anything."""


class Heartbeat:
    """Calls ``beat()`` every ``interval`` seconds until stopped or until it returns False."""

    def __init__(self, beat: Callable[[], bool], interval: float, name: str = "heartbeat") -> None:
        self._beat = beat
        self._interval = interval
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._name = name
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    @property
    def lost(self) -> bool:
        """True once a beat found that someone else holds the claim: stop working at once."""
        return self._lost.is_set()

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=self._interval + 5)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                alive = self._beat()
            except Exception:  # database blip: try again next interval
                log.warning("heartbeat failed; retrying", exc_info=True)
                continue
            if not alive:
                if self._stop.is_set():  # released on purpose while this beat was on its way
                    return
                log.error("%s: claim lost (another worker took it over); stopping", self._name)
                self._lost.set()
                return

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def held(
    beat: Callable[[], bool],
    interval: float,
    *,
    name: str,
    on_error: Callable[[BaseException], None] | None = None,
) -> Iterator[Heartbeat]:
    """Heart-beats a lease while the body runs; the one lease-holding context of the worker.

    An exception in the body becomes :class:`LeaseLost` if a beat found the lease gone (the
    work was presumed dead and taken over; its result must not be written). Any other
    exception is passed to ``on_error`` (to give the lease back, or record a failure) and
    re-raised. The heartbeat is stopped on the way out in every case.
    """
    heartbeat = Heartbeat(beat, interval, name=name)
    with heartbeat:
        try:
            yield heartbeat
        except LeaseLost:
            raise
        except BaseException as exc:
            if heartbeat.lost:
                raise LeaseLost() from exc
            if on_error is not None:
                on_error(exc)
            raise
