"""The worker's broker transports: kombu's Redis and filesystem transports, except that a
message they cannot even read as a kombu envelope is logged and dead-lettered instead of
stopping the worker.

Found: one non-JSON item pushed onto the ``lth`` list stopped the worker (``Unrecoverable
error: JSONDecodeError``, exit code 0, so nothing restarted it). kombu decodes a message in the
transport (Redis: ``Channel._brpop_read`` and ``_get``; filesystem: ``Channel._get``) before
Celery sees it, and an exception there escapes the worker's event loop; Celery's own handling
of bad messages (``on_decode_error``, unknown or invalid tasks: logged, acknowledged) starts
only once the envelope is read. kombu has no hook at that point, so the check sits where the
raw bytes come in: the Redis client that reads BRPOP and RPOP replies (the channel's
``Client``), and the filesystem channel's ``_get``. A message that fails it is moved to the
dead-letter list ``lth.dead`` (Redis; the newest :data:`DEAD_LETTER_KEEP` kept) or left in
the broker's ``processed`` folder under a ``.dead`` name (filesystem), and the worker reads on.

Only the worker consumes, so only its Celery app uses these (``broker_transport``,
worker.config); senders keep kombu's own.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from queue import Empty
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem, redis
from kombu.utils.json import loads

log = logging.getLogger(__name__)

#: Where unreadable messages go (a Redis list nobody consumes), and how many are kept.
DEAD_LETTER_QUEUE = "lth.dead"
DEAD_LETTER_KEEP = 1000


def readable(raw: bytes | str) -> bool:
    """Whether ``raw`` is a kombu envelope the channel can make a message of (JSON object
    with ``properties.delivery_tag``); what is inside is Celery's to judge."""
    try:
        envelope = loads(raw.decode() if isinstance(raw, bytes) else raw)
    except (ValueError, UnicodeDecodeError, TypeError):
        return False
    if not isinstance(envelope, dict):
        return False
    properties = envelope.get("properties")
    return isinstance(properties, dict) and "delivery_tag" in properties


def _shown(raw: bytes | str) -> str:
    text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
    return json.dumps(text[:200])


class DeadLetteringClient(redis.redis.Redis):  # type: ignore[misc]
    """The Redis client of the worker's channels: an unreadable BRPOP or RPOP reply is
    dead-lettered and reads as nothing (the channel then waits for the next message)."""

    def parse_response(self, connection: Any, command_name: Any, **options: Any) -> Any:
        response = super().parse_response(connection, command_name, **options)
        if command_name == "BRPOP" and response:
            queue, raw = response
            if not readable(raw):
                self._dead_letter(queue, raw)
                return None
        return response

    def rpop(self, name: Any, count: int | None = None) -> Any:
        raw = super().rpop(name) if count is None else super().rpop(name, count)
        if isinstance(raw, bytes | str) and not readable(raw):
            self._dead_letter(name, raw)
            return None
        return raw

    def _dead_letter(self, queue: Any, raw: bytes | str) -> None:
        name = queue.decode() if isinstance(queue, bytes) else str(queue)
        log.error(
            "dropped an unreadable message from queue %s (not a kombu envelope: %s); kept in "
            "the Redis list %s",
            name,
            _shown(raw),
            DEAD_LETTER_QUEUE,
        )
        try:
            with self.pipeline() as pipe:
                pipe.lpush(DEAD_LETTER_QUEUE, raw)
                pipe.ltrim(DEAD_LETTER_QUEUE, 0, DEAD_LETTER_KEEP - 1)
                pipe.execute()
        except Exception:
            log.warning("could not keep the unreadable message in %s", DEAD_LETTER_QUEUE)


class RedisChannel(redis.Channel):  # type: ignore[misc]
    def _get_client(self) -> type:
        base = super()._get_client()
        if issubclass(base, DeadLetteringClient):
            return base
        return type("LthRedis", (DeadLetteringClient, base), {})


class RedisTransport(redis.Transport):  # type: ignore[misc]
    Channel = RedisChannel


class FilesystemChannel(filesystem.Channel):  # type: ignore[misc]
    def _get(self, queue: str) -> Any:
        """kombu's (take the oldest file of ``queue`` by moving it to the processed folder,
        an atomic rename), with the payload checked before it is decoded."""
        if not self.store_processed:
            return super()._get(queue)
        inbox, processed = Path(self.data_folder_in), Path(self.processed_folder)
        for name in sorted(os.listdir(inbox)):
            if name.partition(".")[2] != f"{queue}.msg":
                continue
            try:
                taken = Path(shutil.move(inbox / name, processed))
            except OSError:  # another consumer took it
                continue
            try:
                payload = taken.read_bytes()
            except OSError as exc:
                raise ChannelError(f"Cannot read file {taken.name!r} from queue.") from exc
            if readable(payload):
                return loads(payload.decode())
            taken.rename(taken.with_suffix(".dead"))
            log.error(
                "dropped an unreadable message from queue %s (not a kombu envelope: %s); kept "
                "as %s in the broker's processed folder",
                queue,
                _shown(payload),
                taken.with_suffix(".dead").name,
            )
        raise Empty()


class FilesystemTransport(filesystem.Transport):  # type: ignore[misc]
    Channel = FilesystemChannel
