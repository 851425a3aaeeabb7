"""Where an experiment's artifacts live on disk.

Torch-free so the API can find and serve files that the worker wrote without loading them.
The presence of a level's summary.json is what marks the level finished; every file is written
atomically, so a file that exists is whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def spec(self) -> Path:
        return self.root / "spec.json"

    @property
    def init_weights(self) -> Path:
        return self.root / "init.safetensors"

    @property
    def rewind_weights(self) -> Path:
        return self.root / "rewind.safetensors"

    @property
    def initial_mask(self) -> Path:
        """Which mask level 0 started from (path and sha256), when one was given."""
        return self.root / "initial_mask.json"

    @property
    def ticket(self) -> Path:
        return self.root / "ticket.safetensors"

    @property
    def results(self) -> Path:
        return self.root / "results.json"

    def level_dir(self, level: int) -> Path:
        return self.root / "levels" / f"{level:03d}"

    def mask(self, level: int) -> Path:
        return self.level_dir(level) / "mask.safetensors"

    def trained_weights(self, level: int) -> Path:
        return self.level_dir(level) / "trained.safetensors"

    def run_metrics(self, level: int, kind: str) -> Path:
        return self.level_dir(level) / "runs" / f"{kind}.json"

    def summary(self, level: int) -> Path:
        return self.level_dir(level) / "summary.json"

    def finished_levels(self) -> list[int]:
        levels_dir = self.root / "levels"
        if not levels_dir.is_dir():
            return []
        found = []
        for child in levels_dir.iterdir():
            if child.name.isdigit() and (child / "summary.json").is_file():
                found.append(int(child.name))
        return sorted(found)
