"""Checkpoints of a training in progress, so that a run killed at iteration 100K of 112K
resumes there, on any host, from the artifact store alone.

A checkpoint is taken at an evaluation (where the loop's train-loss accumulator is empty, so
the loop's own state is just the iteration) every `training.checkpoint_every` iterations and
whenever `seconds` of training have passed since the last one (LTH_CHECKPOINT_SECONDS; the
clock is read once per evaluation, never per step). It holds everything the rest of the run
depends on: every member's full state dict, the optimizer's state (lth_core.train.optim.FusedStep:
Adam's moments and step count, SGD's momentum buffers), the random-number generators (torch's
CPU one, the device's, the augmentation's; the data order is a pure function of seed and
iteration, lth_core.train.batches), the curves so far and each callback's `checkpoint_state`
(early-stopping point, patience, kept weights, early-bird masks, the rewind snapshot). Resumed
on the same CPU, a run gives the bits an uninterrupted one gives (tests/test_checkpoints.py).

Two objects per checkpoint, no pickle: the tensors as safetensors, written first, then a
strict-JSON manifest naming them with their sha-256 (non-finite floats as {"float": "nan"}).
Only a checkpoint whose manifest parses, matches the training (runs, schedule, start, device
type, stepper, callbacks) and whose tensors have the named digest is resumed; anything else
is skipped with a warning, for the previous one or the start. A new checkpoint replaces the
older ones once its manifest is written; the runner deletes a training's checkpoints when
its runs are published, and a level's when the level finishes.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from safetensors.torch import load

from lth_core.storage.files import get_json, put_json, tensor_bytes
from lth_core.storage.layout import KEYS
from lth_core.storage.store import ArtifactStore, CorruptArtifact, sha256_hex
from lth_core.train.callbacks import load_member
from lth_core.train.loop import Callback, LoopState

log = logging.getLogger(__name__)

FORMAT = "lth-checkpoint/1"
DEFAULT_SECONDS = 600.0  # LTH_CHECKPOINT_SECONDS: about every ten minutes of training


def encode(obj: Any) -> Any:
    """`obj` as strict JSON that decodes to the same floats: finite floats round-trip as
    JSON numbers (Python writes the shortest exact repr), NaN and infinities as
    {"float": "nan" | "inf" | "-inf"}. Tuples become lists."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"float": repr(obj)}
    if isinstance(obj, dict):
        return {k: encode(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [encode(v) for v in obj]
    return obj


def decode(obj: Any) -> Any:
    if isinstance(obj, dict):
        if obj.keys() == {"float"}:
            return float(obj["float"])
        return {k: decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    return obj


@dataclass
class Loaded:
    """A complete checkpoint read back: its manifest and its tensors (on the CPU)."""

    manifest: dict[str, Any]
    tensors: dict[str, torch.Tensor]


@dataclass
class CheckpointSlot:
    """Where one training's checkpoints live and when they are due.

    `kinds`: the runs trained together (a stack checkpoints as one; its label joins them with
    '+'); `identity`: what the caller knows of the training that a checkpoint must match (the
    schedule, the start iteration, the device type); `every`: iterations between checkpoints
    (None: by time only); `seconds`: seconds of training between them (None or 0: never by time).
    """

    store: ArtifactStore
    level: int
    kinds: tuple[str, ...]
    every: int | None = None
    seconds: float | None = DEFAULT_SECONDS
    identity: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return "+".join(self.kinds)

    def iterations(self) -> list[int]:
        """The iterations with a manifest (complete or not), in order."""
        found = []
        for key in self.store.list(KEYS.checkpoints_dir(self.level, self.label)):
            name = key.rsplit("/", 1)[-1]
            stem, dot, ext = name.partition(".")
            if dot and ext == "json" and stem.isdigit():
                found.append(int(stem))
        return sorted(found)

    def write(self, iteration: int, tensors: dict[str, torch.Tensor], body: dict) -> int:
        """Tensors first, then the manifest naming them; then the older checkpoints go
        (manifest before tensors, so none is ever half there with its manifest). The bytes
        written."""
        data = tensor_bytes(tensors)
        tensors_key = KEYS.checkpoint_tensors(self.level, self.label, iteration)
        self.store.put(tensors_key, data)
        manifest = {
            "format": FORMAT,
            "iteration": iteration,
            "tensors": tensors_key,
            "sha256": sha256_hex(data),
            "bytes": len(data),
            **body,
        }
        put_json(self.store, KEYS.checkpoint_manifest(self.level, self.label, iteration), manifest)
        for older in self.iterations():
            if older < iteration:
                self._delete(older)
        return len(data)

    def latest(self, identity: dict[str, Any]) -> Loaded | None:
        """The newest complete checkpoint of this training (`identity`: the slot's plus what
        the loop adds), None when there is none."""
        for iteration in reversed(self.iterations()):
            loaded, why = self._read(iteration, identity)
            if loaded is not None:
                return loaded
            log.warning(
                "level %d, %s: checkpoint at iteration %d skipped: %s",
                self.level,
                self.label,
                iteration,
                why,
            )
        return None

    def _read(self, iteration: int, identity: dict[str, Any]) -> tuple[Loaded | None, str]:
        key = KEYS.checkpoint_manifest(self.level, self.label, iteration)
        try:
            manifest = get_json(self.store, key)
        except (CorruptArtifact, FileNotFoundError, ValueError) as exc:
            return None, f"its manifest cannot be read ({exc})"
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            return None, f"its manifest is not an {FORMAT} manifest"
        tensors_key = KEYS.checkpoint_tensors(self.level, self.label, iteration)
        if manifest.get("iteration") != iteration or manifest.get("tensors") != tensors_key:
            return None, "its manifest names another checkpoint"
        if manifest.get("identity") != encode(identity):
            return None, "it was taken by another training (schedule, device or stepper differ)"
        try:
            data = self.store.get(tensors_key)
        except (CorruptArtifact, FileNotFoundError) as exc:
            return None, f"its tensors cannot be read ({exc})"
        if sha256_hex(data) != manifest.get("sha256"):
            return None, "its tensors are not the ones its manifest names"
        try:
            tensors = load(data)
        except Exception as exc:  # safetensors' own error type
            return None, f"its tensors are not a safetensors file ({exc})"
        return Loaded(manifest, tensors), ""

    def _delete(self, iteration: int) -> None:
        self.store.delete(KEYS.checkpoint_manifest(self.level, self.label, iteration))
        self.store.delete(KEYS.checkpoint_tensors(self.level, self.label, iteration))

    def delete(self) -> None:
        """Every checkpoint of this training (its runs are published)."""
        self.store.delete(KEYS.checkpoints_dir(self.level, self.label))


class Checkpoint(Callback):
    """The loop's checkpoints: resumes from the newest at on_start, writes one at each due
    evaluation. Registered after every callback whose state it keeps (`keeps`), so at
    on_start they have reset themselves and at an evaluation they have seen it.

    `resumed_from`: the iteration resumed from (None: from the start); `written`: the
    iterations checkpointed and `bytes_written`, `seconds_writing` what that cost."""

    def __init__(self, slot: CheckpointSlot, keeps: Sequence[Callback]) -> None:
        self.slot, self.keeps = slot, list(keeps)
        self.resumed_from: int | None = None
        self.written: list[int] = []
        self.bytes_written = 0
        self.seconds_writing = 0.0
        self._last = 0.0

    def identity(self, state: LoopState) -> dict[str, Any]:
        return {
            **self.slot.identity,
            "kinds": list(self.slot.kinds),
            "start_iteration": state.start_iteration,
            "stepper": type(state.stepper).__name__,
            "members": state.stepper.k,
            "callbacks": [type(c).__name__ for c in self.keeps],
        }

    def on_start(self, state: LoopState) -> None:
        self.resumed_from, self.written = None, []
        self._last = time.monotonic()
        loaded = self.slot.latest(self.identity(state))
        if loaded is not None:
            self._restore(state, loaded)

    def on_evaluation(self, state: LoopState, points: list[dict[str, float]]) -> None:
        if not self._may_write(state):
            return
        every, seconds = self.slot.every, self.slot.seconds
        if (every and state.iteration % every == 0) or (
            seconds and time.monotonic() - self._last >= seconds
        ):
            self.write(state)

    def _may_write(self, state: LoopState) -> bool:
        it = state.iteration
        return (
            not state.stop
            and state.start_iteration < it < state.iterations
            and it != self.resumed_from
        )

    def write(self, state: LoopState) -> None:
        started = time.perf_counter()
        tensors, data = self._gather(state)
        body = {
            "identity": encode(self.identity(state)),
            "curves": encode(state.curves),
            "callbacks": encode(data),
            "members": {
                "done": state.done,
                "frozen": sorted(state.frozen),
                "iterations": state.member_iterations,
            },
        }
        self.bytes_written += self.slot.write(state.iteration, tensors, body)
        self.written.append(state.iteration)
        self._last = time.monotonic()
        self.seconds_writing += time.perf_counter() - started

    def _gather(self, state: LoopState) -> tuple[dict[str, torch.Tensor], list[Any]]:
        stepper = state.stepper
        tensors: dict[str, torch.Tensor] = {}
        for m in range(stepper.k):
            for name, t in stepper.state_dict(m).items():
                tensors[f"member/{m}/{name}"] = t
        assert state.optimizer is not None and state.batches is not None
        for name, t in state.optimizer.state_tensors().items():
            tensors[f"optimizer/{name}"] = t
        tensors["rng/cpu"] = torch.get_rng_state()
        device = next(iter(stepper.params.values())).device
        if device.type == "cuda":
            tensors["rng/cuda"] = torch.cuda.get_rng_state(device)
        if state.batches.generator is not None:
            tensors["rng/augment"] = state.batches.generator.get_state()
        data: list[Any] = []
        for i, callback in enumerate(self.keeps):
            kept = callback.checkpoint_state(state)
            if kept is None:
                data.append(None)
                continue
            for name, t in kept[0].items():
                tensors[f"callback/{i}/{name}"] = t
            data.append({"data": kept[1]})
        return tensors, data

    def _restore(self, state: LoopState, loaded: Loaded) -> None:
        tensors, manifest = loaded.tensors, loaded.manifest
        stepper = state.stepper
        for m in range(stepper.k):
            load_member(stepper, m, _under(tensors, f"member/{m}/"))
        assert state.optimizer is not None and state.batches is not None
        state.optimizer.load_state_tensors(_under(tensors, "optimizer/"))
        torch.set_rng_state(tensors["rng/cpu"])
        if "rng/cuda" in tensors:
            device = next(iter(stepper.params.values())).device
            torch.cuda.set_rng_state(tensors["rng/cuda"], device)
        if state.batches.generator is not None:
            state.batches.generator.set_state(tensors["rng/augment"])
        for curve, saved in zip(state.curves, decode(manifest["curves"]), strict=True):
            curve[:] = saved
        members = manifest["members"]  # finished members of a stack stay frozen on resume
        state.done[:] = members["done"]
        state.frozen = set(members["frozen"])
        state.member_iterations[:] = members["iterations"]
        for i, (callback, kept) in enumerate(
            zip(self.keeps, decode(manifest["callbacks"]), strict=True)
        ):
            if kept is not None:
                callback.restore_state(state, _under(tensors, f"callback/{i}/"), kept["data"])
        state.iteration = self.resumed_from = int(manifest["iteration"])
        log.info(
            "level %d, %s: resumed from the checkpoint at iteration %d",
            self.slot.level,
            self.slot.label,
            state.iteration,
        )


def _under(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    n = len(prefix)
    return {k[n:]: t for k, t in tensors.items() if k.startswith(prefix)}
