"""API keys never reach the access log, even when a client puts one in the query string.

The API reads keys only from ``Authorization`` (which uvicorn does not log), but a client may
still send ``GET /experiments?api_key=lth_...`` (refused with 422, yet logged as requested). The
filter below rewrites the path of every ``uvicorn.access`` record: anything shaped like a key,
and the value of any query parameter whose name says key, token or secret, becomes
``[redacted]``.
"""

from __future__ import annotations

import logging
import re

ACCESS_LOGGER = "uvicorn.access"

_KEY = re.compile(r"lth_[0-9A-Za-z_-]{8,}")
_SECRET_PARAM = re.compile(r"(?i)([?&][^=&#]*(?:key|token|secret|password|auth)[^=&#]*=)[^&#]*")


def scrub(path: str) -> str:
    """``path`` with keys and secret-looking query values replaced by ``[redacted]``."""
    return _KEY.sub("[redacted]", _SECRET_PARAM.sub(r"\1[redacted]", path))


class ScrubSecrets(logging.Filter):
    """Rewrites the request path (uvicorn's third argument) of an access log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], scrub(args[2]), *args[3:])
        return True


def install() -> None:
    """Adds the filter to uvicorn's access logger once (idempotent)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, ScrubSecrets) for f in logger.filters):
        logger.addFilter(ScrubSecrets())
