"""Reading and writing artifacts: safetensors for tensors, JSON for metrics, never pickle.

Every write goes to a temporary file in the same folder, is flushed to disk, then renamed over
the target: a process killed mid-write leaves the old file or none, never half a file.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def strict_json(obj: Any) -> Any:
    """`obj` with every NaN or infinity as None: JSON has no such numbers, and strict parsers
    (JavaScript's JSON.parse) reject the `NaN` Python writes (a run's train_loss at iteration
    0, a diverged loss). The API sends the same values as null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strict_json(v) for v in obj]
    return obj


def save_json(path: Path, obj: Any) -> None:
    """Strict JSON (see strict_json), written atomically."""
    text = json.dumps(strict_json(obj), indent=1, sort_keys=False, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode())


def load_json(path: Path) -> Any:
    return json.loads(path.read_text())


def save_tensors(
    path: Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
        save_file(cpu, tmp, metadata=dict(metadata) if metadata else None)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_tensors(path: Path, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    return load_file(str(path), device=str(device))
