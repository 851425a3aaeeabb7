"""Fixtures every test module may use."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# Starlette's TestClient calls every server "testserver"; real servers answer only to the names
# of the machine (service.origin), so the tests' name is one more allowed host.
os.environ.setdefault("LTH_API_ALLOWED_HOSTS", "testserver")
# The suite submits one tiny spec many times on purpose (each test its own experiment); a real
# server refuses an identical spec with 409 duplicate_spec (tests/test_first_hour_ux.py turns
# that default back on to test it).
os.environ.setdefault("LTH_ALLOW_DUPLICATE_SPECS", "true")


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One torch thread, restored afterwards: on a 2-core machine shared with other work, a
    second thread spinning on a busy core made small training steps several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
