"""Which GPUs this host has, found without touching CUDA.

The process that starts workers must not initialize CUDA (its forked children would inherit a
context they cannot use), so it neither imports torch nor asks the driver through it: it reads
``CUDA_VISIBLE_DEVICES`` or lists the devices with ``nvidia-smi``.
"""

from __future__ import annotations

import os
import shutil
import subprocess


def detect_gpus() -> list[str]:
    """The GPU ids visible here (as CUDA_VISIBLE_DEVICES entries); empty when there are none."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [v.strip() for v in visible.split(",") if v.strip()]
        return [] if ids in ([], ["-1"]) else ids
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        listing = subprocess.run(
            [smi, "-L"], capture_output=True, text=True, timeout=20, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(listing.splitlines()) if line.startswith("GPU ")]


def parse_gpus(option: str | None) -> list[str]:
    """``--gpus``: ``auto``/``all`` (detect), ``none``/``cpu`` (CPU only), or ``0,1``."""
    value = (option or "auto").strip()
    if value.lower() in ("auto", "all"):
        return detect_gpus()
    if value.lower() in ("none", "cpu", "", "-1"):
        return []
    ids = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in ids if not v.isdigit() and not v.upper().startswith(("GPU-", "MIG-"))]
    if bad:
        raise ValueError(f"--gpus takes auto, none or ids like 0,1 (not {', '.join(bad)})")
    return ids
