"""Building the engine for one experiment, the same way for a level task and a control task.

torch is imported only inside :func:`build_experiment`, i.e. in the task's child process (see
``worker/__init__``).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lth_core.registry.plugins import PluginMissing
from lth_core.spec import ExperimentSpec, parse_spec
from lth_core.spec.names import missing_plugins
from lth_core.storage.layout import KEYS
from lth_core.storage.store import LocalStore
from store.artifacts import experiment_store, is_local, mask_path
from store.db import session_scope
from store.models import Experiment as ExperimentRow
from store.settings import Settings

if TYPE_CHECKING:
    from lth_core.experiment import Experiment

log = logging.getLogger(__name__)


def load_spec(settings: Settings, experiment_id: str) -> ExperimentSpec:
    """The experiment's spec as stored (validated once by the API; parsed again here). A spec
    naming a plugin this worker lacks is a PluginMissing naming the package (the API recorded
    it in the spec's `plugins`), which fails the experiment with that one line."""
    with session_scope(settings) as session:
        row = session.get(ExperimentRow, experiment_id)
        data: dict[str, Any] = dict(row.spec) if row is not None else {}
    missing = missing_plugins(data)
    if missing is not None:
        raise PluginMissing(f"{missing} (worker {socket.gethostname()})")
    return parse_spec(data)


def initial_mask(settings: Settings, spec: ExperimentSpec) -> Path | None:
    """The mask file a mask-reuse spec starts from (another experiment's level). From an
    object store it is copied (checked) into this worker's scratch folder, with what
    `mask.with_init` reads beside it (the source's spec, theta_0, rewind point)."""
    if spec.mask is None:
        return None
    source_id, level = spec.mask.experiment_id, spec.mask.level
    if is_local(settings):
        return mask_path(settings, source_id, level)
    source = experiment_store(settings, source_id)
    scratch = LocalStore(settings.data_dir / "scratch" / source_id)
    for key in (KEYS.mask(level), KEYS.spec, KEYS.init_weights, KEYS.rewind_weights):
        if source.exists(key):
            scratch.put(key, source.get(key))
    return scratch.local_path(KEYS.mask(level))


def build_experiment(
    settings: Settings,
    experiment_id: str,
    spec: ExperimentSpec,
    *,
    device: str,
    progress: Callable[[Any], None] | None,
    should_stop: Callable[[], bool],
    repair: bool = False,
) -> Experiment:
    """The engine over the experiment's artifact store (it resumes from what is there);
    `repair` (the experiment's holder only): corrupt artifacts are deleted, logged naming the
    file and the experiment, and their runs trained again."""
    from lth_core.experiment import Experiment  # torch: only here, in the task's child

    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    experiment = Experiment(
        spec,
        experiment_store(settings, experiment_id),
        device=device,
        initial_mask=initial_mask(settings, spec),
        progress=progress,
        should_stop=should_stop,
        repair=repair,
        checkpoint_seconds=settings.checkpoint_seconds,
    )
    for corrupt in experiment.repaired:
        log.warning("experiment %s: %s; its run is trained again", experiment_id, corrupt)
    return experiment
