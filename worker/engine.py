"""Building the engine for one experiment, the same way for a level task and a control task.

torch is imported only inside :func:`build_experiment`, i.e. in the task's child process (see
``worker/__init__``).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lth_core.registry.plugins import PluginMissing
from lth_core.spec import ExperimentSpec, parse_spec
from lth_core.spec.names import missing_plugins
from store.artifacts import experiment_dir, mask_path
from store.db import session_scope
from store.models import Experiment as ExperimentRow
from store.settings import Settings

if TYPE_CHECKING:
    from lth_core.experiment import Experiment


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
    """The mask file a mask-reuse spec starts from (another experiment's level)."""
    if spec.mask is None:
        return None
    return mask_path(settings, spec.mask.experiment_id, spec.mask.level)


def build_experiment(
    settings: Settings,
    experiment_id: str,
    spec: ExperimentSpec,
    *,
    device: str,
    progress: Callable[[Any], None] | None,
    should_stop: Callable[[], bool],
) -> Experiment:
    """The engine over the experiment's artifact folder (it resumes from what is there)."""
    from lth_core.experiment import Experiment  # torch: only here, in the task's child

    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    return Experiment(
        spec,
        experiment_dir(settings, experiment_id),
        device=device,
        initial_mask=initial_mask(settings, spec),
        progress=progress,
        should_stop=should_stop,
    )
