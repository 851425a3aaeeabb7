"""What a diagnostic is: a measurement of a finished level that is not a run.

A diagnostic the spec asks for runs when its level finishes; its result is kept beside the
level (`levels/LLL/<name>.json`, so a resumed level does not measure again) and goes into the
level's summary under its name. Adding one is a class here on `Diagnostic` and a line in
lth_core.registry.diagnostics.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    import torch

    from lth_core.imp.run_plan import RunPlan
    from lth_core.nn.data import Splits
    from lth_core.nn.models import PrunableModel
    from lth_core.spec import ExperimentSpec
    from lth_core.storage.store import ArtifactStore


class LevelContext(Protocol):
    """What a diagnostic may use of its experiment."""

    spec: ExperimentSpec
    device: torch.device
    trial_seeds: list[int]
    store: ArtifactStore

    @property
    def splits(self) -> Splits: ...

    def plan(self, level: int, kind: str) -> RunPlan: ...

    def build(self, seed: int | None) -> PrunableModel: ...


class Diagnostic(ABC):
    name: ClassVar[str]

    @abstractmethod
    def enabled(self, spec: ExperimentSpec) -> bool:
        """Whether the spec asks for this diagnostic."""

    @abstractmethod
    def measure(self, experiment: LevelContext, level: int) -> dict[str, Any]:
        """The level's result (strict-JSON-able)."""
