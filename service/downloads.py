"""Sending an artifact: from its file where the store keeps one, streamed from the store
otherwise, or (``LTH_ARTIFACTS_REDIRECT_SECONDS``) a redirect to a short-lived presigned URL.

Every download carries the sha-256 recorded when the artifact was written, as its ``ETag``
and as ``Repr-Digest: sha-256=:<base64>:`` (RFC 9530), and is checked against it first: a
file is hashed before it is sent; a stream is hashed as it goes and cut short (the client
sees fewer bytes than Content-Length) when it turns out different; either way the
corruption is logged naming the file and the experiment, and a file caught before sending is
answered 500 ``artifact_corrupt``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Callable, Iterator
from typing import BinaryIO

from fastapi import Response
from fastapi.responses import FileResponse, RedirectResponse, StreamingResponse

from lth_core.storage.store import ArtifactStore, CorruptArtifact
from service.errors import ApiError, Corrupt

log = logging.getLogger(__name__)


def digest_headers(hex_digest: str | None) -> dict[str, str]:
    """``ETag`` and ``Repr-Digest`` for a sha-256 (none without one)."""
    if hex_digest is None:
        return {}
    b64 = base64.b64encode(bytes.fromhex(hex_digest)).decode()
    return {"ETag": f'"{hex_digest}"', "Repr-Digest": f"sha-256=:{b64}:"}


def download(
    store: ArtifactStore,
    key: str,
    filename: str,
    missing: Callable[[], ApiError],
    *,
    what: str,
    redirect_seconds: int = 0,
) -> Response:
    """The artifact `key` as a download; `what` names it in a corruption message (the
    experiment and the file)."""
    if not store.exists(key):
        raise missing()
    path = store.local_path(key)
    try:
        if path is not None:
            headers = digest_headers(store.verify(key))
            return FileResponse(
                path, media_type="application/octet-stream", filename=filename, headers=headers
            )
        recorded = store.digest(key)
        presign = getattr(store, "presigned_url", None)
        if redirect_seconds and presign is not None:
            url = presign(key, redirect_seconds)
            return RedirectResponse(url, status_code=307, headers=digest_headers(recorded))
        size, stream = store.size(key), store.open(key)
    except FileNotFoundError:  # deleted in between
        raise missing() from None
    except CorruptArtifact as exc:
        log.error("%s: %s", what, exc)
        raise Corrupt(f"{what} is corrupt ({key}): {exc.why}") from None
    return StreamingResponse(
        _checked_chunks(stream, recorded, f"{what} ({key})"),
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(size),
            "Content-Disposition": f'attachment; filename="{filename}"',
            **digest_headers(recorded),
        },
    )


def _checked_chunks(stream: BinaryIO, recorded: str | None, what: str) -> Iterator[bytes]:
    """The stream's bytes a megabyte at a time, closing it at the end (or when the client
    goes away); the last chunk is held back until the digest is known to match."""
    digest = hashlib.sha256()
    with stream:
        held = b""
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
            if held:
                yield held
            held = chunk
        if recorded is not None and digest.hexdigest() != recorded:
            log.error(
                "%s is corrupt: its sha-256 is %s, %s was written",
                what,
                digest.hexdigest(),
                recorded,
            )
            raise CorruptArtifact(what, "", "digest mismatch while streaming")
        if held:
            yield held
