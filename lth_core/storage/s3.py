"""An artifact store in an S3-compatible object store (AWS S3, MinIO, rclone serve s3, ...).

Chosen by ``LTH_ARTIFACTS_URL=s3://bucket/prefix`` (store.artifacts.experiment_store); the
client is boto3's, configured the standard AWS way (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, or an instance role).

What makes it safe to share between hosts:

* a put is one request (multipart above `multipart_bytes`, completed in one request too), so a
  reader sees the old object, the new one or none; an upload cut short leaves nothing (the
  multipart upload is aborted, and an incomplete one is never listed or read);
* the object's sha-256 travels in its metadata (``x-amz-meta-sha256``) in that same request;
* an outage (no connection, a timeout, a 5xx, throttling) is retried with exponential backoff
  for `retry_seconds` before it is raised as StoreUnavailable; only a 404 is "not there", so an
  outage is never taken for a missing object (a finished run is never taken for unfinished).

Torch-free; boto3 is imported here only, and this module only where an s3:// URL is used.
"""

from __future__ import annotations

import io
import os
import random
import time
from collections.abc import Callable
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urlparse

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from lth_core.storage.store import ArtifactStore, _prefix, check_key

T = TypeVar("T")

_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_TRANSIENT = {"RequestTimeout", "SlowDown", "Throttling", "ThrottlingException", "InternalError"}
_CLIENTS: dict[tuple[int, str | None, str | None], Any] = {}


class StoreUnavailable(OSError):
    """The object store did not answer within the retry window."""


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (bucket, 'some/prefix/'); the prefix may be empty."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"{url!r} is not an s3://bucket[/prefix] URL")
    return parsed.netloc, _prefix(parsed.path.strip("/"))


def s3_client(endpoint_url: str | None = None) -> Any:
    """One boto3 client per process (clients are not safe across fork) and endpoint; the
    endpoint and credentials come from the standard AWS settings unless given."""
    endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
    key = (os.getpid(), endpoint_url, os.environ.get("AWS_ACCESS_KEY_ID"))
    if key not in _CLIENTS:
        config = Config(
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
            s3={"addressing_style": "path"},
        )
        _CLIENTS[key] = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url or None, config=config
        )
    return _CLIENTS[key]


def _sha256_of(answer: dict[str, Any]) -> str | None:
    """The recorded digest in a head/get answer (servers differ in the metadata names' case)."""
    metadata = {k.lower(): v for k, v in (answer.get("Metadata") or {}).items()}
    return metadata.get("sha256")


def _is_not_found(exc: BaseException) -> bool:
    return isinstance(exc, ClientError) and str(exc.response["Error"].get("Code")) in _NOT_FOUND


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ClientError):
        code = str(exc.response["Error"].get("Code"))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return code in _TRANSIENT or status >= 500
    return isinstance(exc, BotoCoreError | ConnectionError | TimeoutError)


class S3Store(ArtifactStore):
    """The objects under `prefix` ('' or 'a/b/') of `bucket`."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: Any = None,
        multipart_bytes: int = 64 << 20,
        retry_seconds: float = 300.0,
    ) -> None:
        self.bucket, self.prefix = bucket, _prefix(prefix.strip("/"))
        self.client = client if client is not None else s3_client()
        self.multipart_bytes = max(5 << 20, multipart_bytes)
        self.retry_seconds = retry_seconds

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> S3Store:
        bucket, prefix = parse_s3_url(url)
        return cls(bucket, prefix, **kwargs)

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def describe(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """`fn()`, retried with exponential backoff (with jitter) while the store is out."""
        deadline, delay = time.monotonic() + self.retry_seconds, 0.2
        while True:
            try:
                return fn()
            except Exception as exc:
                if not _is_transient(exc) or _is_not_found(exc):
                    raise
                if time.monotonic() + delay > deadline:
                    raise StoreUnavailable(
                        f"s3://{self.bucket}: {what} failed for {self.retry_seconds:.0f} s: {exc}"
                    ) from exc
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 15.0)

    def _put(self, key: str, data: bytes, digest: str) -> None:
        name = self._key(key)
        config = TransferConfig(
            multipart_threshold=self.multipart_bytes,
            multipart_chunksize=self.multipart_bytes,
            use_threads=False,
        )
        extra = {"Metadata": {"sha256": digest}, "ContentType": "application/octet-stream"}
        self._call(
            f"put {name}",
            lambda: self.client.upload_fileobj(
                io.BytesIO(data), self.bucket, name, ExtraArgs=extra, Config=config
            ),
        )

    def _object(self, key: str, read: Callable[[dict[str, Any]], T]) -> T:
        """`read(get_object's answer)`, retried as a whole (a body cut short is read again)."""
        name = self._key(key)
        try:
            return self._call(
                f"get {name}", lambda: read(self.client.get_object(Bucket=self.bucket, Key=name))
            )
        except ClientError as exc:
            if _is_not_found(exc):
                raise FileNotFoundError(f"no artifact {self.describe(key)}") from None
            raise

    def _get(self, key: str) -> tuple[bytes, str | None]:
        def read(obj: dict[str, Any]) -> tuple[bytes, str | None]:
            try:
                return obj["Body"].read(), _sha256_of(obj)
            finally:
                obj["Body"].close()

        return self._object(key, read)

    def _head(self, key: str) -> dict[str, Any] | None:
        name = self._key(key)
        try:
            return self._call(
                f"head {name}", lambda: self.client.head_object(Bucket=self.bucket, Key=name)
            )
        except ClientError as exc:
            if _is_not_found(exc):
                return None
            raise

    def digest(self, key: str) -> str | None:
        head = self._head(key)
        return None if head is None else _sha256_of(head)

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def size(self, key: str) -> int:
        head = self._head(key)
        if head is None:
            raise FileNotFoundError(f"no artifact {self.describe(key)}")
        return int(head["ContentLength"])

    def open(self, key: str) -> BinaryIO:
        return self._object(key, lambda obj: obj["Body"])  # a StreamingBody: read(n), close()

    def _names(self, prefix: str) -> list[str]:
        def page_through() -> list[str]:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            return [o["Key"] for page in pages for o in page.get("Contents", [])]

        return self._call(f"list {prefix}", page_through)

    def list(self, prefix: str = "") -> list[str]:
        n = len(self.prefix)
        return sorted(k[n:] for k in self._names(self.prefix + _prefix(prefix)))

    def delete(self, prefix: str = "") -> None:
        if prefix:
            names = [self._key(prefix), *self._names(self.prefix + _prefix(prefix))]
        else:
            names = self._names(self.prefix)
        for start in range(0, len(names), 1000):
            batch = [{"Key": k} for k in names[start : start + 1000]]
            self._call(
                "delete",
                lambda b=batch: self.client.delete_objects(  # type: ignore[misc]
                    Bucket=self.bucket, Delete={"Objects": b, "Quiet": True}
                ),
            )

    def presigned_url(self, key: str, seconds: int) -> str:
        """A URL that downloads the object without credentials for `seconds`."""
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._key(key)}, ExpiresIn=seconds
        )

    def scoped(self, prefix: str) -> ArtifactStore:
        return S3Store(
            self.bucket,
            self.prefix + _prefix(prefix),
            client=self.client,
            multipart_bytes=self.multipart_bytes,
            retry_seconds=self.retry_seconds,
        )
