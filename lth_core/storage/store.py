"""The artifact store: every read and write of an experiment's artifacts goes through here.

Keys are the layout's names (`levels/003/mask.safetensors`, lth_core.storage.layout.Keys),
relative and '/'-separated. The engine, the worker and the API see only this interface, so
where artifacts live — one local folder today, an object store across hosts — is one class
and no other change. Writes are whole or absent: a reader never sees half an object. Torch-free
so the API can serve artifacts without loading torch.

Every object carries the sha-256 of its bytes, recorded by the write that made it (a local
store: a hidden sidecar file beside it; an object store: the object's metadata, written in the
same request). Every `get` checks it and raises CorruptArtifact naming the object; `verify`
checks an object without keeping it; `digest` is the recorded one (what the API sends with a
download). An object written before digests were recorded has none and is read unchecked.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from pathlib import Path, PurePosixPath
from typing import BinaryIO


class InvalidKey(ValueError):
    """A key that could name something outside the store."""


class CorruptArtifact(ValueError):
    """An object whose bytes are not the ones written (its sha-256 differs from the recorded
    one, or it does not parse); `where` names the object, `key` is its key in the store."""

    def __init__(self, where: str, key: str, why: str) -> None:
        super().__init__(f"{where} is corrupt: {why}")
        self.where, self.key, self.why = where, key, why


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_digest(store: ArtifactStore, key: str, actual: str, recorded: str | None) -> None:
    """Raises CorruptArtifact when a recorded digest differs from the bytes' `actual` one."""
    if recorded is not None and actual != recorded:
        raise CorruptArtifact(
            store.describe(key), key, f"its sha-256 is {actual}, {recorded} was written"
        )


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

    #: The service's id of the experiment whose artifacts these are (set by the service's
    #: store.artifacts.experiment_store; None for a local run's folder): written into every
    #: mask and ticket file's provenance (lth_core.storage.provenance).
    experiment_id: str | None = None

    def put(self, key: str, data: bytes) -> None:
        """Stores `data` under `key` with its sha-256, replacing what was there, atomically."""
        self._put(key, data, sha256_hex(data))

    def get(self, key: str) -> bytes:
        """The object's bytes, checked against its recorded digest (CorruptArtifact);
        FileNotFoundError naming the key when there is none."""
        data, recorded = self._get(key)
        if recorded is not None and sha256_hex(data) != recorded:
            time.sleep(0.05)  # maybe replaced while read: read both again
            data, recorded = self._get(key)
        check_digest(self, key, sha256_hex(data), recorded)
        return data

    def verify(self, key: str) -> str:
        """Reads the object through, checking it (CorruptArtifact); its sha-256 (hex)."""
        recorded = self.digest(key)
        h = hashlib.sha256()
        with self.open(key) as stream:
            while chunk := stream.read(1 << 20):
                h.update(chunk)
        actual = h.hexdigest()
        if recorded is not None and actual != recorded:
            time.sleep(0.05)  # maybe replaced while read: read both again
            actual, recorded = sha256_hex(self.get(key)), self.digest(key)
        check_digest(self, key, actual, recorded)
        return actual

    @abstractmethod
    def _put(self, key: str, data: bytes, digest: str) -> None:
        """Stores `data` and its sha-256 `digest` (hex) so that neither is seen without the
        other being the right one (or none)."""

    @abstractmethod
    def _get(self, key: str) -> tuple[bytes, str | None]:
        """The object's bytes and the digest recorded with them (None: none recorded)."""

    @abstractmethod
    def digest(self, key: str) -> str | None:
        """The sha-256 (hex) recorded when the object was written; None when none was."""

    def describe(self, key: str) -> str:
        """The object's name in messages (its path, its URL)."""
        return key

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
        self.experiment_id = parent.experiment_id

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def put(self, key: str, data: bytes) -> None:
        self.parent.put(self._key(key), data)

    def get(self, key: str) -> bytes:
        return self.parent.get(self._key(key))

    def verify(self, key: str) -> str:
        return self.parent.verify(self._key(key))

    def _put(self, key: str, data: bytes, digest: str) -> None:
        self.parent._put(self._key(key), data, digest)

    def _get(self, key: str) -> tuple[bytes, str | None]:
        return self.parent._get(self._key(key))

    def digest(self, key: str) -> str | None:
        return self.parent.digest(self._key(key))

    def describe(self, key: str) -> str:
        return self.parent.describe(self._key(key))

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
    mid-write leaves the old file or none, never half a file.

    A file's digest is the hidden sidecar `.<name>.sha256`, removed before the file is
    replaced and written after it: a writer stopped in between leaves a file without a digest
    (read unchecked), never a digest of other bytes; a reader between the two steps sees the
    old digest with the new file and reads both again (ArtifactStore.get)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    @staticmethod
    def _sidecar(path: Path) -> Path:
        return path.with_name(f".{path.name}.sha256")

    def _put(self, key: str, data: bytes, digest: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _write_temp(path, data)
        try:
            self._sidecar(path).unlink(missing_ok=True)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        os.replace(_write_temp(path, f"{digest}\n".encode()), self._sidecar(path))

    def _get(self, key: str) -> tuple[bytes, str | None]:
        path = self._path(key)
        return path.read_bytes(), self._recorded(path)

    def _recorded(self, path: Path) -> str | None:
        try:
            return self._sidecar(path).read_text().strip() or None
        except OSError:
            return None

    def digest(self, key: str) -> str | None:
        return self._recorded(self._path(key))

    def describe(self, key: str) -> str:
        return str(self._path(key))

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
            self._sidecar(target).unlink(missing_ok=True)

    def open(self, key: str) -> BinaryIO:
        return self._path(key).open("rb")

    def size(self, key: str) -> int:
        return self._path(key).stat().st_size

    def local_path(self, key: str) -> Path:
        return self._path(key)


def _write_temp(path: Path, data: bytes) -> str:
    """`data` in a new hidden file beside `path`, flushed to disk; its name."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def store_at(where: ArtifactStore | Path | str) -> ArtifactStore:
    """A store from what a caller gives: a store as it is, a folder as a LocalStore."""
    return where if isinstance(where, ArtifactStore) else LocalStore(Path(where))
