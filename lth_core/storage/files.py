"""Artifacts as bytes: safetensors for tensors, strict JSON for everything else, never pickle.

Each helper comes in two forms: on an artifact store by key (what the engine, the worker and
the API use) and on a local path (what `lth run` and the tests hold); both write through the
store, so there is one atomic write.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load, load_file, save

from lth_core.storage.json_files import get_json, json_bytes, put_json, strict_json
from lth_core.storage.store import ArtifactStore, CorruptArtifact, LocalStore

__all__ = ["get_json", "json_bytes", "put_json", "strict_json"]


def tensor_bytes(
    tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> bytes:
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    return save(cpu, metadata=dict(metadata) if metadata else None)


def put_tensors(
    store: ArtifactStore,
    key: str,
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str] | None = None,
) -> None:
    store.put(key, tensor_bytes(tensors, metadata))


def get_tensors(store: ArtifactStore, key: str) -> dict[str, torch.Tensor]:
    """CPU tensors, checked against the digest written with them; a file that is not
    safetensors is a CorruptArtifact naming it, like one whose digest differs."""
    data = store.get(key)
    try:
        tensors = load(data)
    except Exception as exc:  # safetensors' SafetensorError names no file
        raise CorruptArtifact(store.describe(key), key, f"not a safetensors file ({exc})") from exc
    # In name order, as safetensors' load_file gives them: a random control draws its layers
    # in this order (lth_core.pruning.random_mask_like), so the order is part of the bits.
    return {name: tensors[name] for name in sorted(tensors)}


def _local(path: Path) -> tuple[LocalStore, str]:
    return LocalStore(path.parent), path.name


def save_json(path: Path, obj: Any) -> None:
    """Strict JSON, written atomically."""
    put_json(*_local(path), obj)


def save_tensors(
    path: Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> None:
    put_tensors(*_local(path), tensors, metadata)


def load_tensors(path: Path, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    return load_file(str(path), device=str(device))
