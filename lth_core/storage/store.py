"""The artifact store: every read and write of an experiment's artifacts goes through here.

Keys are the layout's names (`levels/003/mask.safetensors`, lth_core.storage.layout.Keys),
relative and '/'-separated. The engine, the worker and the API see only this interface, so
where artifacts live — one local folder today, an object store across hosts — is one class
and no other change. Writes are whole or absent: a reader never sees half an object. Torch-free
so the API can serve artifacts without loading torch.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path, PurePosixPath
from typing import BinaryIO


class InvalidKey(ValueError):
    """A key that could name something outside the store."""


def check_key(key: str) -> str:
    """`key` if it is a relative, '/'-separated name without `..`, empty or hidden parts."""
    parts = key.split("/")
    if (
        not key
        or key.startswith("/")
        or "\\" in key
        or "\x00" in key
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise InvalidKey(f"{key[:120]!r} is not an artifact key")
    return key


def _prefix(prefix: str) -> str:
    """A folder-like prefix: '' (everything) or 'a/b/'."""
    if not prefix:
        return ""
    return check_key(prefix.rstrip("/")) + "/"


class ArtifactStore(ABC):
    """Where one experiment's (or one data directory's) artifacts live."""

    @abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Stores `data` under `key`, replacing what was there, atomically."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The object's bytes; FileNotFoundError naming the key when there is none."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Every key under the folder-like `prefix` ('' for all), sorted."""

    @abstractmethod
    def delete(self, prefix: str = "") -> None:
        """Deletes the key `prefix` and everything under it ('' for the whole store);
        deleting what is not there is not an error."""

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A readable binary stream of the object (for sending it without reading it whole)."""

    @abstractmethod
    def size(self, key: str) -> int: ...

    def local_path(self, key: str) -> Path | None:
        """The object as a file on this host, where the store keeps it as one (a local store:
        memory-mapped loads, sendfile); None for a remote store."""
        return None

    def scoped(self, prefix: str) -> ArtifactStore:
        """The part of this store under `prefix`, as a store of its own."""
        return ScopedStore(self, _prefix(prefix))


class ScopedStore(ArtifactStore):
    """A view of another store under a prefix (an experiment's folder, a trial's folder)."""

    def __init__(self, parent: ArtifactStore, prefix: str) -> None:
        self.parent, self.prefix = parent, prefix

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def put(self, key: str, data: bytes) -> None:
        self.parent.put(self._key(key), data)

    def get(self, key: str) -> bytes:
        return self.parent.get(self._key(key))

    def exists(self, key: str) -> bool:
        return self.parent.exists(self._key(key))

    def list(self, prefix: str = "") -> list[str]:
        n = len(self.prefix)
        return [k[n:] for k in self.parent.list(self.prefix + _prefix(prefix))]

    def delete(self, prefix: str = "") -> None:
        self.parent.delete((self.prefix + _prefix(prefix)).rstrip("/"))

    def open(self, key: str) -> BinaryIO:
        return self.parent.open(self._key(key))

    def size(self, key: str) -> int:
        return self.parent.size(self._key(key))

    def local_path(self, key: str) -> Path | None:
        return self.parent.local_path(self._key(key))

    def scoped(self, prefix: str) -> ArtifactStore:
        return ScopedStore(self.parent, self.prefix + _prefix(prefix))


class LocalStore(ArtifactStore):
    """A folder on this host: a key is a file below `root`. Each write goes to a temporary
    file beside its target, is flushed to disk and renamed over it, so a process killed
    mid-write leaves the old file or none, never half a file."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
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

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        base = self.root / _prefix(prefix) if prefix else self.root
        if not base.is_dir():
            return []
        return sorted(
            PurePosixPath(p.relative_to(self.root)).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )

    def delete(self, prefix: str = "") -> None:
        target = self._path(prefix) if prefix else self.root
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)

    def open(self, key: str) -> BinaryIO:
        return self._path(key).open("rb")

    def size(self, key: str) -> int:
        return self._path(key).stat().st_size

    def local_path(self, key: str) -> Path:
        return self._path(key)


def store_at(where: ArtifactStore | Path | str) -> ArtifactStore:
    """A store from what a caller gives: a store as it is, a folder as a LocalStore."""
    return where if isinstance(where, ArtifactStore) else LocalStore(Path(where))
