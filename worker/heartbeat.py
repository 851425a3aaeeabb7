"""A background thread that keeps a claim alive while the main thread trains.

Training holds the GIL in long stretches of Python between kernels, but releases it during
every tensor op and I/O, so a plain daemon thread gets to run often enough for beats measured
in seconds. The thread never raises: a database that is briefly unreachable costs a missed
beat, and only a beat that reaches the database and finds the claim gone marks it lost.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


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
