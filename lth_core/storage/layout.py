"""The names of an experiment's artifacts: the one definition of the layout.

`Keys` names every artifact relative to the experiment (the artifact store's keys); `Layout`
is the same names as paths below a local folder, for code that holds a folder (`lth run`'s
output, the tests). Torch-free so the API can find and serve what the worker wrote without
loading it. The presence of a level's summary.json marks the level finished; every artifact
is written whole or not at all, so one that exists is complete.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lth_core.storage.store import ArtifactStore

SPEC = "spec.json"
INIT_WEIGHTS = "init.safetensors"
REWIND_WEIGHTS = "rewind.safetensors"
INITIAL_MASK = "initial_mask.json"  # which mask level 0 started from (path, sha256)
TICKET = "ticket.safetensors"
RESULTS = "results.json"
LEVELS = "levels"


@dataclass(frozen=True)
class Keys:
    """Artifact keys; `prefix` is a trial's folder (`trials/001/`), '' for trial 0."""

    prefix: str = ""

    @classmethod
    def of_trial(cls, trial: int) -> Keys:
        """Trial 0 is the folder itself (an experiment without trials is laid out as it always
        was); trial t keeps its weights and masks under `trials/NNN/`. Every run's metrics and
        every level's summary stay in the folder itself."""
        return cls("" if trial == 0 else f"trials/{trial:03d}/")

    @property
    def spec(self) -> str:
        return self.prefix + SPEC

    @property
    def init_weights(self) -> str:
        return self.prefix + INIT_WEIGHTS

    @property
    def rewind_weights(self) -> str:
        return self.prefix + REWIND_WEIGHTS

    @property
    def initial_mask(self) -> str:
        return self.prefix + INITIAL_MASK

    @property
    def ticket(self) -> str:
        return self.prefix + TICKET

    @property
    def results(self) -> str:
        return self.prefix + RESULTS

    def level_dir(self, level: int) -> str:
        return f"{self.prefix}{LEVELS}/{level:03d}"

    def mask(self, level: int) -> str:
        return self.level_dir(level) + "/mask.safetensors"

    def trained_weights(self, level: int) -> str:
        return self.level_dir(level) + "/trained.safetensors"

    def dense_weights(self, iteration: int) -> str:
        """The dense run's (level 0 ticket's) full state dict at `iteration`: theta_k for the
        instability analysis (analysis.instability.iterations)."""
        return f"{self.level_dir(0)}/dense_at/{iteration:07d}.safetensors"

    def control_mask(self, level: int, run: str) -> str:
        """The mask a control found itself (pruning at initialization), beside the level's."""
        return f"{self.level_dir(level)}/masks/{run}.safetensors"

    def control_mask_info(self, level: int, run: str) -> str:
        """How that mask was found: method, variant, counts, scoring passes and seconds."""
        return f"{self.level_dir(level)}/masks/{run}.json"

    def runs_dir(self, level: int) -> str:
        return self.level_dir(level) + "/runs"

    def run_metrics(self, level: int, kind: str) -> str:
        return f"{self.runs_dir(level)}/{kind}.json"

    def summary(self, level: int) -> str:
        return self.level_dir(level) + "/summary.json"

    def staged_metrics(self, level: int, kind: str, token: str) -> str:
        """Where a worker holding claim `token` writes a control's metrics before publishing
        them under `run_metrics` (worker.control.staging)."""
        return f"{self.level_dir(level)}/staging/{kind}.{token}.json"

    def checkpoints_dir(self, level: int, label: str | None = None) -> str:
        """Where a training of `level` in progress keeps its checkpoints; `label` is its runs'
        ids joined by '+' (`ticket`, `ticket+random_reinit`: a stack checkpoints as one),
        None for every training of the level (deleted when the level finishes)."""
        root = f"{self.level_dir(level)}/checkpoints"
        return root if label is None else f"{root}/{label}"

    def checkpoint_tensors(self, level: int, label: str, iteration: int) -> str:
        """A checkpoint's tensors (weights, optimizer state, random-number generators, ...)."""
        return f"{self.checkpoints_dir(level, label)}/{iteration:09d}.safetensors"

    def checkpoint_manifest(self, level: int, label: str, iteration: int) -> str:
        """A checkpoint's manifest: written after its tensors, naming them with their sha-256;
        its presence marks the checkpoint complete (lth_core.train.checkpoint)."""
        return f"{self.checkpoints_dir(level, label)}/{iteration:09d}.json"

    def diagnostic(self, level: int, name: str) -> str:
        """A diagnostic's result for the level (`instability.json`)."""
        return f"{self.level_dir(level)}/{name}.json"


KEYS = Keys()


def finished_levels(store: ArtifactStore) -> list[int]:
    """The levels whose summary is written, in order."""
    found = set()
    for key in store.list(LEVELS):
        parts = key.split("/")
        if len(parts) == 3 and parts[1].isdigit() and parts[2] == "summary.json":
            found.add(int(parts[1]))
    return sorted(found)


@dataclass(frozen=True)
class Layout:
    """The keys as paths below a local folder `root`."""

    root: Path
    keys: Keys = KEYS

    @property
    def spec(self) -> Path:
        return self.root / self.keys.spec

    @property
    def init_weights(self) -> Path:
        return self.root / self.keys.init_weights

    @property
    def rewind_weights(self) -> Path:
        return self.root / self.keys.rewind_weights

    @property
    def initial_mask(self) -> Path:
        return self.root / self.keys.initial_mask

    @property
    def ticket(self) -> Path:
        return self.root / self.keys.ticket

    @property
    def results(self) -> Path:
        return self.root / self.keys.results

    def level_dir(self, level: int) -> Path:
        return self.root / self.keys.level_dir(level)

    def mask(self, level: int) -> Path:
        return self.root / self.keys.mask(level)

    def trained_weights(self, level: int) -> Path:
        return self.root / self.keys.trained_weights(level)

    def run_metrics(self, level: int, kind: str) -> Path:
        return self.root / self.keys.run_metrics(level, kind)

    def summary(self, level: int) -> Path:
        return self.root / self.keys.summary(level)

    def finished_levels(self) -> list[int]:
        from lth_core.storage.store import LocalStore

        return finished_levels(LocalStore(self.root / self.keys.prefix))
