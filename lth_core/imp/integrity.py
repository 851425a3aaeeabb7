"""Corrupt artifacts found when an experiment is resumed, and what must go with each so that
the engine makes it again instead of failing on it forever.

Every artifact carries the sha-256 written with it (lth_core.storage.store); resuming reads
each one through and checks it. A corrupt artifact is deleted together with what marks the
run that produced it finished, so the run is trained again (a pure function of spec, level and
run id: the same bits) and the level finished again:

* a run's metrics, a trial's trained weights: that run (and its level's summary);
* a level's mask: made again from the level before; the level's runs and summary go with it;
* the rewind point: level 0's ticket run of that trial;
* a summary, a diagnostic, results.json, the ticket file: the level is finished again;
* theta_0, the spec, the initial-mask record, a staged file: made again as on a fresh start;
* a checkpoint's file: only itself (its training resumes from an older one, or from the start).
"""

from __future__ import annotations

import re

from lth_core.runs import run_id
from lth_core.storage.layout import KEYS, Keys, finished_levels
from lth_core.storage.store import ArtifactStore, CorruptArtifact

_TRIAL = re.compile(r"trials/(\d{3})/(.*)")
_LEVEL = re.compile(r"levels/(\d{3})/(.*)")


def find_corrupt(store: ArtifactStore) -> list[CorruptArtifact]:
    """Every artifact whose bytes differ from the digest written with them."""
    found = []
    for key in store.list():
        try:
            store.verify(key)
        except CorruptArtifact as exc:
            found.append(exc)
        except FileNotFoundError:
            continue  # deleted while listed
    return found


def to_delete(store: ArtifactStore, key: str) -> list[str]:
    """The corrupt `key` and what marks the run that produced it finished."""
    trial, rest = 0, key
    if m := _TRIAL.fullmatch(key):
        trial, rest = int(m.group(1)), m.group(2)
    keys = Keys.of_trial(trial)
    if rest == keys.rewind_weights.removeprefix(keys.prefix):
        return [key, KEYS.run_metrics(0, run_id("ticket", trial)), KEYS.summary(0)]
    if rest in ("ticket.safetensors", "results.json"):
        done = finished_levels(store)
        return [key, *([KEYS.summary(done[-1])] if done else [])]
    m = _LEVEL.fullmatch(rest)
    if m is None:
        return [key]
    level, name = int(m.group(1)), m.group(2)
    if name == "mask.safetensors":
        return [key, KEYS.runs_dir(level), KEYS.summary(level)]
    if name == "trained.safetensors":
        return [key, KEYS.run_metrics(level, run_id("ticket", trial)), KEYS.summary(level)]
    if name == "summary.json" or name.startswith(("staging/", "checkpoints/")):
        return [key]
    return [key, KEYS.summary(level)]  # a run's metrics, a diagnostic


def repair(store: ArtifactStore) -> list[CorruptArtifact]:
    """Deletes every corrupt artifact and what goes with it; the corrupt ones found."""
    found = find_corrupt(store)
    for corrupt in found:
        for key in to_delete(store, corrupt.key):
            store.delete(key)
    return found
