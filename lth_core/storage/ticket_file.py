"""The ticket file format, written and read here only.

A ticket file holds the masks (`mask/<name>`, bool, one per pruned weight) and the weights
training starts from (`init/<name>`: theta_0, or theta_k when rewinding), named as in the
registry model's state_dict; its metadata says what it is (`format`), where it came from
(`model`, `dataset`, `level`, `spec`, `metrics`) and how inputs were normalized. A level's
mask file is read the same way (masks only, no `format`). A file that says it is a ticket of
another format is refused rather than misread.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from lth_core.storage import provenance
from lth_core.storage.files import put_tensors
from lth_core.storage.store import ArtifactStore

FORMAT = "lth-ticket-v1"
MASK, INIT = "mask/", "init/"


@dataclass
class TicketFile:
    masks: dict[str, torch.Tensor]
    init: dict[str, torch.Tensor]
    metadata: dict[str, str] = field(default_factory=dict)

    def meta_json(self, name: str) -> Any:
        """A JSON-valued metadata entry (`spec`, `metrics`, `normalization`), {} if absent."""
        return json.loads(self.metadata[name]) if name in self.metadata else {}


def write_ticket(
    store: ArtifactStore,
    key: str,
    masks: Mapping[str, torch.Tensor],
    init: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str],
) -> None:
    """The ticket file, its provenance (lth_core.storage.provenance) stamped from the
    metadata's `spec`, `level` and `trial`, the masks and the store's experiment id."""
    tensors = {f"{MASK}{n}": m for n, m in masks.items()}
    tensors.update({f"{INIT}{n}": t for n, t in init.items()})
    stamped = provenance.stamp(
        json.loads(metadata["spec"]),
        kind="ticket",
        level=int(metadata["level"]),
        trial=int(metadata.get("trial", 0)),
        weights_remaining=provenance.fraction_kept(masks),
        experiment_id=store.experiment_id,
    )
    put_tensors(store, key, tensors, {"format": FORMAT, **stamped, **metadata})


def init_weights_of(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The `init/` entries of a ticket file's tensors, by weight name ({} for a mask file)."""
    return {k.removeprefix(INIT): v for k, v in tensors.items() if k.startswith(INIT)}


def read_ticket(path: str | Path) -> TicketFile:
    """A ticket file, or a level's mask file (then `init` is empty); ValueError for a ticket
    of a format this version does not know."""
    tensors: dict[str, torch.Tensor] = {}
    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata() or {})
        for key in f.keys():  # noqa: SIM118 - safe_open is not a mapping
            tensors[key] = f.get_tensor(key)
    found = meta.get("format")
    if found is not None and found != FORMAT:
        raise ValueError(f"{path} is a ticket of format {found!r}; this version reads {FORMAT!r}")
    masks = {k.removeprefix(MASK): v.bool() for k, v in tensors.items() if not k.startswith(INIT)}
    return TicketFile(masks, init_weights_of(tensors), meta)
