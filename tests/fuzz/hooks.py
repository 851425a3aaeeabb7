"""Schemathesis hooks for the live fuzz run (tests/test_security_fuzz_live.py).

Generated experiment specs are almost never valid (the spec has rules JSON Schema cannot
state: ``eval_every <= iterations``, milestones below ``iterations``, the service's limits), so
without help every ``POST /experiments`` is a 422, no experiment exists, and the OpenAPI links
from it lead nowhere: the stateful phase would test nothing past 404. So two thirds of the
*positive* submissions are replaced by a tiny valid spec (synthetic data, a few iterations,
seeded from the generated body, so the run stays reproducible); negative cases and the rest
are sent as generated. The worker then trains what was submitted while the fuzzer reads,
cancels and deletes it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import schemathesis


def tiny_spec(seed: int) -> dict[str, Any]:
    """A spec the worker trains in about a second on CPU."""
    return {
        "model": "lenet_300_100",
        "seed": seed,
        "dataset": {
            "name": "synthetic",
            "validation_size": 50,
            "synthetic": {"train_size": 200, "test_size": 50},
        },
        "training": {"iterations": 20, "eval_every": 10, "batch_size": 20},
        "pruning": {"levels": 1},
    }


@schemathesis.hook
def before_call(ctx: Any, case: Any, kwargs: Any) -> None:
    operation = case.operation
    if operation.method.upper() != "POST" or operation.path != "/experiments":
        return
    meta = getattr(case, "_meta", None)
    if meta is None or str(meta.generation.mode) != "positive":
        return
    digest = hashlib.sha256(json.dumps(case.body, sort_keys=True, default=str).encode()).digest()
    if digest[0] % 3 == 0:
        return
    case.body = tiny_spec(int.from_bytes(digest[1:4], "big"))
