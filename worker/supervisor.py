"""A small process supervisor: keeps child processes running, stops them all together.

``lth serve`` supervises the API and the embedded worker; ``lth worker --gpus 0,1`` one worker
per GPU. A child that exits is restarted, after a back-off that grows while it keeps dying
young (a crash loop must not spin the CPU) and resets once it has run for a while. SIGTERM or
SIGINT stops everything: each child gets SIGTERM (Celery's warm shutdown lets a level finish,
uvicorn stops gracefully), then, after a grace period, its whole process group gets SIGKILL; a
level interrupted that way resumes on the next worker once its heartbeat has expired.

Each child runs in its own session so a terminal's Ctrl-C reaches only the supervisor, which
then stops the children in order; on Linux a child also gets SIGTERM if the supervisor itself
dies (PR_SET_PDEATHSIG), so no orphaned worker keeps a claim alive.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


@dataclass
class Child:
    """One supervised command and its current process."""

    name: str
    argv: Sequence[str]
    env: dict[str, str] | None = None
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    backoff: float = field(default=1.0)
    restarts: int = 0


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Supervisor:
    """Runs children until told to stop; ``run()`` blocks and returns an exit code."""

    def __init__(
        self,
        children: Sequence[Child],
        *,
        stop_grace: float = 30.0,
        max_backoff: float = 30.0,
        healthy_after: float = 30.0,
    ) -> None:
        self.children = list(children)
        self.stop_grace = stop_grace
        self.max_backoff = max_backoff
        self.healthy_after = healthy_after
        self._stopping = threading.Event()

    def stop(self, *_: object) -> None:
        self._stopping.set()

    def run(self) -> int:
        previous = {s: signal.signal(s, self.stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for child in self.children:
                self._start(child)
            while not self._stopping.wait(0.5):
                for child in self.children:
                    self._tend(child)
        finally:
            self._shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    def _start(self, child: Child) -> None:
        env = {**os.environ, **(child.env or {})}
        child.process = subprocess.Popen(
            list(child.argv), env=env, start_new_session=True, preexec_fn=_die_with_parent
        )
        child.started_at = time.monotonic()
        child.restart_at = None
        log.info("started %s (pid %d)", child.name, child.process.pid)

    def _tend(self, child: Child) -> None:
        now = time.monotonic()
        if child.restart_at is not None:
            if now >= child.restart_at:
                child.restarts += 1
                self._start(child)
            return
        if child.process is None or child.process.poll() is None:
            return
        lived = now - child.started_at
        child.backoff = (
            1.0 if lived >= self.healthy_after else min(self.max_backoff, child.backoff * 2)
        )
        child.restart_at = now + child.backoff
        log.warning(
            "%s exited with %s after %.0f s; restarting in %.0f s",
            child.name,
            child.process.returncode,
            lived,
            child.backoff,
        )

    def _shutdown(self) -> None:
        running = [c for c in self.children if c.process and c.process.poll() is None]
        for child in running:  # the main process only: Celery's warm shutdown, then the pool
            assert child.process is not None
            with contextlib.suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_grace
        for child in running:
            assert child.process is not None
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0f s; killing it", child.name, self.stop_grace)
            _signal_group(child, signal.SIGKILL)
            child.process.wait()


def _signal_group(child: Child, sig: signal.Signals) -> None:
    """Signals the child's whole process group (a Celery worker and its pool children)."""
    if child.process is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.process.pid, sig)
