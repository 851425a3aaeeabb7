"""Where an experiment's artifacts live, in the layout of lth_core, and how the API reads them.

Every read, listing and delete goes through the experiment's :class:`ArtifactStore`
(:func:`experiment_store`), so moving artifacts off this host (an object store) changes that
one function and nothing that reads them. Every key starts from a validated id and an integer
level, so no request can steer a read outside the experiment's store (no ``..``, no
separators, no absolute paths). The path functions (``experiment_dir``, ``mask_path``...) are
the worker's, which writes into a local folder.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lth_core.runs import is_run_id
from lth_core.storage.layout import KEYS, Layout
from lth_core.storage.store import ArtifactStore, LocalStore
from store.settings import Settings

if TYPE_CHECKING:
    from lth_core.storage.s3 import S3Store

_HEX_ID = re.compile(r"[0-9a-f]{32}")


class InvalidId(ValueError):
    """An id that is not an experiment id; callers answer it as 'not found'."""


def normalize_id(experiment_id: str) -> str:
    """The canonical form of an id (32 lower-case hex digits); upper case and the dashed UUID
    form are accepted and normalized."""
    if _HEX_ID.fullmatch(experiment_id.lower()):
        return experiment_id.lower()
    if len(experiment_id) == 36:
        try:
            return uuid.UUID(experiment_id).hex
        except ValueError:
            pass
    raise InvalidId(f"{experiment_id[:80]!r} is not an experiment id")


def experiment_dir(settings: Settings, experiment_id: str) -> Path:
    """``DATA_DIR/experiments/<id>``: the engine's OUT directory for this experiment."""
    return settings.experiments_dir / normalize_id(experiment_id)


def experiment_store(settings: Settings, experiment_id: str) -> ArtifactStore:
    """The store of one (validated) experiment's artifacts, keyed as lth_core's layout names
    them: a folder under the data directory, or ``experiments/<id>/`` under the object store
    of ``LTH_ARTIFACTS_URL``."""
    store: ArtifactStore
    if settings.artifacts_url:
        store = object_store(settings).scoped(f"experiments/{normalize_id(experiment_id)}")
    else:
        store = LocalStore(experiment_dir(settings, experiment_id))
    store.experiment_id = normalize_id(experiment_id)
    return store


def object_store(settings: Settings) -> S3Store:
    """The object store of ``LTH_ARTIFACTS_URL`` (boto3 is imported only here)."""
    from lth_core.storage.s3 import S3Store

    assert settings.artifacts_url
    return S3Store.from_url(
        settings.artifacts_url,
        multipart_bytes=settings.artifacts_multipart_bytes,
        retry_seconds=settings.artifacts_retry_seconds,
    )


def is_local(settings: Settings) -> bool:
    """Whether artifacts live in this host's data directory (no LTH_ARTIFACTS_URL)."""
    return not settings.artifacts_url


def layout(settings: Settings, experiment_id: str) -> Layout:
    """lth_core's artifact layout rooted at the (validated) experiment directory."""
    return Layout(experiment_dir(settings, experiment_id))


def check_level(level: int) -> int:
    """`level` if it is an integer in 0..999 (a bool or a float is not one)."""
    if not isinstance(level, int) or isinstance(level, bool) or not 0 <= level <= 999:
        raise ValueError(f"level must be an integer between 0 and 999, not {level!r}")
    return level


def check_run(run: str) -> str:
    """`run` if it is a run id (lth_core.runs), the only names a run's file may have."""
    if not is_run_id(run):
        raise ValueError(f"{run!r} is not a run id")
    return run


def mask_key(level: int) -> str:
    """``levels/LLL/mask.safetensors``: one bool tensor per prunable weight."""
    return KEYS.mask(check_level(level))


def mask_path(settings: Settings, experiment_id: str, level: int) -> Path:
    """The mask of a level as a path (the worker's; the API reads :func:`mask_key`)."""
    return layout(settings, experiment_id).mask(check_level(level))


def run_path(settings: Settings, experiment_id: str, level: int, run: str) -> Path:
    """``levels/LLL/runs/<run id>.json``: one run's metrics and curve."""
    return layout(settings, experiment_id).run_metrics(check_level(level), check_run(run))


def ticket_path(settings: Settings, experiment_id: str) -> Path:
    """``ticket.safetensors``: the winning ticket's masks and initial weights."""
    return layout(settings, experiment_id).ticket


def read_runs(settings: Settings, experiment_id: str, level: int) -> dict[str, dict[str, Any]]:
    """Every finished run of a level (every trial's), by run id, in a stable order.

    Objects are written whole by the engine, so one that exists is complete; one that does
    not parse is skipped rather than served half-read, and a name that is not a run id is
    not one of the engine's.
    """
    store = experiment_store(settings, experiment_id)
    runs_dir = KEYS.runs_dir(check_level(level))
    out: dict[str, dict[str, Any]] = {}
    for key in store.list(runs_dir):
        name = key[len(runs_dir) + 1 :]
        run = name.removesuffix(".json")
        if run == name or not is_run_id(run):
            continue
        try:
            data = json.loads(store.get(key))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            out[run] = data
    return out


def remove_experiment(settings: Settings, experiment_id: str) -> None:
    """Deletes an experiment's artifacts; none left is already the desired state."""
    experiment_store(settings, experiment_id).delete()
