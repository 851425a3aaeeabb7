"""Seeds: every named use of an experiment's seed gets its own, derived here only.

A run's seeds are a pure function of (spec, level, run id), which is what lets any worker
re-run an interrupted run and get the same bits. Torch-free.
"""

from __future__ import annotations

import hashlib


def derive_seed(seed: int, *parts: object, bits: int = 63) -> int:
    """An independent `bits`-bit seed for the named use `parts` of `seed`. Trial seeds are
    62-bit (they are user-visible seeds in their own right, and every seed a spec accepts is
    below 2**62); the seeds a run draws from a trial's seed are 63-bit."""
    digest = hashlib.sha256(repr((seed, *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - bits)
