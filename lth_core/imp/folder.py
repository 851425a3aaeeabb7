"""The experiment's identity on its artifact store: which experiment the store holds, the mask
level 0 started from, and each trial's initial weights.

A store holds one experiment: reopening it with another spec, or with another initial mask,
is refused with a one-line reason, so a resumed run can only continue what it began.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lth_core.imp.mask_source import InitialMask, mismatch
from lth_core.nn.models import PrunableModel
from lth_core.pruning import StateDict
from lth_core.spec import ExperimentSpec
from lth_core.storage.files import get_json, get_tensors, put_json, put_tensors
from lth_core.storage.layout import KEYS, Keys
from lth_core.storage.store import ArtifactStore, LocalStore
from lth_core.storage.ticket_file import init_weights_of


class ExperimentFolder:
    def __init__(
        self,
        spec: ExperimentSpec,
        store: ArtifactStore,
        initial_mask: InitialMask | None,
        where: str,
    ) -> None:
        """`where`: how to name the store in messages (its folder)."""
        self.spec, self.store, self.initial_mask, self.where = spec, store, initial_mask, where
        self._claim()

    def theta0s(
        self, template: PrunableModel, build: Callable[[int], PrunableModel]
    ) -> list[StateDict]:
        """Each trial's theta_0, made once and kept: `template` is trial 0's model, `build(seed)`
        makes another trial's; a transferred init (mask.with_init) replaces them all."""
        seeds = [self.spec.trial_seed(t) for t in range(self.spec.trials)]
        source = self._source_init(template.state_dict()) if self._with_init() else None
        return [
            self._load_or_save(
                Keys.of_trial(t).init_weights,
                source
                if source is not None
                else (template if t == 0 else build(seed)).state_dict(),
            )
            for t, seed in enumerate(seeds)
        ]

    def _load_or_save(self, key: str, tensors: StateDict) -> StateDict:
        if self.store.exists(key):
            return get_tensors(self.store, key)
        put_tensors(self.store, key, tensors)
        return {k: v.detach().clone() for k, v in tensors.items()}

    def _with_init(self) -> bool:
        return self.spec.mask is not None and self.spec.mask.with_init

    def _source_init(self, template: StateDict) -> StateDict:
        """The weights the transferred mask's source trained from (Morcos et al. 2019): the
        `init/` entries of a ticket file, or the source experiment's theta_0 (theta_k when it
        rewound) beside its level's mask file."""
        if self.initial_mask is None:
            raise ValueError("mask.with_init needs the source's mask file")
        path = self.initial_mask.path
        weights = init_weights_of(get_tensors(LocalStore(path.parent), path.name))
        if not weights:
            weights = _beside_level_mask(path)
        missing = sorted(set(template) - set(weights))
        wrong = sorted(
            n for n in template if n in weights and weights[n].shape != template[n].shape
        )
        if missing or wrong:
            raise ValueError(
                f"mask.with_init: the source's weights do not fit {self.spec.model}: missing "
                f"{missing or 'nothing'}, other shapes {wrong or 'nothing'}"
            )
        return {n: weights[n].clone() for n in template}

    def _claim(self) -> None:
        """The store holds this experiment (same spec, same initial mask) or a new one."""
        wanted = self.spec.model_dump(mode="json")
        fresh = not self.store.exists(KEYS.spec)
        if not fresh:
            stored = get_json(self.store, KEYS.spec)
            if stored != wanted and not _legacy_local_mask(stored, wanted, self.initial_mask):
                raise ValueError(
                    f"{self.where} holds a different experiment; use a new output folder"
                )
        recorded = (
            get_json(self.store, KEYS.initial_mask)
            if self.store.exists(KEYS.initial_mask)
            else None
        )
        # A folder written before masks were recorded: trust what it was started with.
        legacy = recorded is None and self.initial_mask is not None and not self._made_dense()
        if not fresh and not legacy:
            why = mismatch(recorded, self.initial_mask, Path(self.where))
            if why:
                raise ValueError(why)
        if fresh:
            put_json(self.store, KEYS.spec, wanted)
        if recorded is None and self.initial_mask is not None:
            put_json(self.store, KEYS.initial_mask, self.initial_mask.record())

    def _made_dense(self) -> bool:
        """Whether level 0 was prepared without a mask (its mask has nothing pruned)."""
        key = KEYS.mask(0)
        return self.store.exists(key) and all(
            bool(m.all()) for m in get_tensors(self.store, key).values()
        )


def _beside_level_mask(path: Path) -> StateDict:
    """The source experiment's theta_0 (theta_k when it rewound) for one of its level masks,
    `<source>/levels/LLL/mask.safetensors`."""
    source = LocalStore(path.parent.parent.parent)
    mode = (
        get_json(source, KEYS.spec).get("reset", {}).get("mode")
        if source.exists(KEYS.spec)
        else None
    )
    key = KEYS.rewind_weights if mode == "rewind" else KEYS.init_weights
    if not source.exists(key):
        raise ValueError(
            f"mask.with_init: {path} is neither a ticket file (with init/ weights) nor "
            f"a level mask beside its experiment's {key}"
        )
    return get_tensors(source, key)


def _legacy_local_mask(
    stored: dict[str, Any], wanted: dict[str, Any], initial_mask: InitialMask | None
) -> bool:
    """A folder that `lth run --mask` wrote before mask sources were typed: its spec carries
    the placeholder source {"experiment_id": "local", "level": 0}, otherwise the same spec."""
    placeholder = {"experiment_id": "local", "level": 0}
    if initial_mask is None or initial_mask.reference is not None or wanted.get("mask") is not None:
        return False
    return stored.get("mask") == placeholder and {**stored, "mask": None} == wanted
