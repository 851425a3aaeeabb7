"""The mask an experiment's level 0 starts from (ticket transfer): a file, and whence it came.

Either a service reference (the spec's `mask`: an experiment id and level, resolved to that
level's mask file by the worker) or a local file (`lth run --mask FILE`, which is no part of
the spec). The output folder records the file's path and content hash (`initial_mask.json`),
so an experiment is never resumed from a different mask than it started with.
Torch-free: hashing reads bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lth_core.spec import MaskSource


@dataclass(frozen=True)
class InitialMask:
    path: Path
    reference: MaskSource | None = None  # None: a local file

    def sha256(self) -> str:
        digest = hashlib.sha256()
        with open(self.path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()

    def record(self) -> dict[str, Any]:
        """What the output folder keeps of it."""
        record: dict[str, Any] = {"path": str(self.path), "sha256": self.sha256()}
        if self.reference is not None:
            record["source"] = self.reference.model_dump()
        return record


def mismatch(
    recorded: dict[str, Any] | None, given: InitialMask | None, folder: Path
) -> str | None:
    """Why `given` may not continue the experiment in `folder`, which recorded `recorded`
    (None: the folder records no mask)."""
    if recorded is None:
        if given is None:
            return None
        return f"{folder} was made without a mask, this run gives {given.path}: use a new output folder"
    if given is None:
        return (
            f"{folder} was made with the mask {recorded['path']}: pass it again (--mask) "
            "or use a new output folder"
        )
    if given.sha256() != recorded["sha256"]:
        return (
            f"{folder} was made with the mask {recorded['path']} (sha256 "
            f"{recorded['sha256'][:12]}...), {given.path} is a different mask: use a new "
            "output folder"
        )
    return None
