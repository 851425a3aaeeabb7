"""Server paths out of messages users read: an error recorded for an experiment (``error``
of ``GET /experiments/{id}``) must say what went wrong without telling a remote user where the
server keeps its files (found: a resume whose mask source was deleted failed with
``FileNotFoundError: [Errno 2] No such file or directory: '/srv/lth/experiments/<id>/...'``).

Paths under the data directory keep their part below it (``experiments/<id>/levels/003/
mask.safetensors``: what a user can relate to their experiments); any other absolute path
(a library's file, a temporary folder) keeps only its last component.
"""

from __future__ import annotations

import re

from store.settings import Settings

#: An absolute POSIX path of two or more components, not part of a URL or a longer word.
_ABSOLUTE = re.compile(r"(?<![\w.:/~-])/(?:[\w.@+-]+/)+[\w.@+-]*")


def without_server_paths(text: str, settings: Settings | None = None) -> str:
    """``text`` with the data directory's prefix and every other absolute path removed."""
    if settings is not None:
        for root in {str(settings.data_dir.resolve()), str(settings.data_dir.absolute())}:
            if len(root) > 1:
                text = text.replace(root.rstrip("/") + "/", "")
    return _ABSOLUTE.sub(lambda m: _last(m.group(0)), text)


def _last(path: str) -> str:
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return f".../{name}" if name else "..."
