"""The API process never imports torch: it must start fast and light, next to GPU workers."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
import service.main
from service.main import create_app
app = create_app()
app.openapi()
import store.artifacts, store.db, store.experiments, store.models, store.queue, store.settings
import cli.main
heavy = sorted(m for m in ("torch", "torchvision", "numpy") if m in sys.modules)
print(",".join(heavy))
"""


def test_api_never_imports_torch() -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120, check=True
    )
    heavy = result.stdout.strip().split(",") if result.stdout.strip() else []
    assert "torch" not in heavy and "torchvision" not in heavy, heavy
