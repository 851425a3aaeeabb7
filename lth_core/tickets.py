"""Using a winning ticket in your own PyTorch code: load it, put it into your model, train.

A ticket file (`ticket.safetensors` of `lth run` or `GET /experiments/{id}/ticket`) holds
the masks (`mask/<name>`, bool, one per pruned weight) and the weights training starts from
(`init/<name>`: theta_0, or theta_k when rewinding), named as in the registry model's
state_dict, with the registry model name and the input normalization in its metadata::

    from lth_core.tickets import load_ticket

    ticket = load_ticket("ticket.safetensors")
    model = MyLeNet()                                   # your own module
    handle = ticket.apply(model, name_map={"fc1.weight": "layers.0.weight", ...})
    # ... your own training loop; inputs as ticket.normalize(x) ...
    handle.remove()                                     # plain module again, still sparse

`apply` copies the ticket's starting weights (pruned entries zero) into the module by name,
or through `name_map` (ticket name -> your name; a missing match is an error that proposes
a map, by shape in order). Pruned weights then stay exactly zero however you train: a
forward pre-hook re-applies each mask before the module computes, and a gradient hook zeroes
their gradients so optimizer state (momentum, Adam's moments) never builds up there. Both
are removed by `handle.remove()`, which applies the masks a last time. Only torch and
safetensors are needed; nothing of lth's engine runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lth_core.storage.ticket_file import read_ticket

NameMap = Mapping[str, str] | Callable[[str], str]


@dataclass
class Ticket:
    masks: dict[str, torch.Tensor]  # bool, by the registry model's weight names
    init: dict[str, torch.Tensor]  # the full state dict training starts from, unmasked
    model: str | None = None  # the registry model name, e.g. "lenet_300_100"
    dataset: str | None = None
    mean: tuple[float, ...] | None = None  # per channel: inputs are (x - mean) / std
    std: tuple[float, ...] | None = None
    level: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)  # the level's summary
    spec: dict[str, Any] = field(default_factory=dict)  # the experiment's full spec

    @property
    def weights(self) -> dict[str, torch.Tensor]:
        """The ticket itself: the starting weights with the pruned ones at zero."""
        return {
            n: t * self.masks[n].to(t.dtype) if n in self.masks else t.clone()
            for n, t in self.init.items()
        }

    @property
    def weights_remaining(self) -> float:
        kept = sum(int(m.sum()) for m in self.masks.values())
        return kept / max(1, sum(m.numel() for m in self.masks.values()))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs (N, C, H, W) in [0, 1] normalized as the ticket was trained."""
        if self.mean is None or self.std is None:
            return x
        shape = (1, -1) + (1,) * (x.dim() - 2)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(shape)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(shape)
        return (x - mean) / std

    def apply(
        self, module: nn.Module, name_map: NameMap | None = None, *, keep_pruned: bool = True
    ) -> MaskHandle:
        """Loads the ticket into `module` (see the module docstring); returns the handle whose
        `remove()` takes the hooks off again."""
        rename = _renamer(name_map)
        state = module.state_dict()
        targets = {name: rename(name) for name in self.init}
        unmatched = sorted(n for n, t in targets.items() if t not in state)
        if unmatched:
            raise KeyError(_no_match(unmatched, self.init, state, bool(name_map)))
        for name, target in targets.items():
            if tuple(state[target].shape) != tuple(self.init[name].shape):
                raise ValueError(
                    f"ticket {name} has shape {list(self.init[name].shape)}, the model's "
                    f"{target} {list(state[target].shape)}"
                )
        left = sorted(set(state) - set(targets.values()))
        params = dict(module.named_parameters())
        if any(n in params for n in left):
            raise KeyError(
                "the ticket has no weights for the model's "
                f"{[n for n in left if n in params]}; is it the same architecture?"
            )
        weights = self.weights
        with torch.no_grad():
            for name, target in targets.items():
                state[target].copy_(weights[name])
        masks = {targets[n]: m for n, m in self.masks.items()}
        handle = MaskHandle(module, masks)
        if keep_pruned:
            handle.attach()
        return handle


class MaskHandle:
    """Keeps a module's pruned weights at zero while it trains; `remove()` ends that."""

    def __init__(self, module: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
        self.module = module
        self.masks = dict(masks)
        self._hooks: list[Any] = []
        self._params = dict(module.named_parameters())

    def _mask(self, name: str) -> torch.Tensor:
        param = self._params[name]
        mask = self.masks[name]
        if mask.device != param.device or mask.dtype != param.dtype:
            mask = self.masks[name] = mask.to(device=param.device, dtype=param.dtype)
        return mask

    def apply_masks(self) -> None:
        """Sets every pruned weight to zero now."""
        with torch.no_grad():
            for name in self.masks:
                self._params[name].mul_(self._mask(name))

    def attach(self) -> None:
        owners: dict[str, list[str]] = {}
        for name in self.masks:
            owners.setdefault(name.rpartition(".")[0], []).append(name)
        for owner, names in owners.items():

            def before_forward(_module: nn.Module, _inputs: Any, names: list[str] = names) -> None:
                with torch.no_grad():
                    for n in names:
                        self._params[n].mul_(self._mask(n))

            self._hooks.append(
                self.module.get_submodule(owner).register_forward_pre_hook(before_forward)
            )
        for name in self.masks:
            self._hooks.append(
                self._params[name].register_hook(lambda g, n=name: g * self._mask(n))
            )

    def remove(self) -> None:
        """Takes the hooks off and applies the masks a last time: a plain, sparse module."""
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()
        self.apply_masks()


def load_ticket(path: str | Path) -> Ticket:
    """A ticket file (or a level's mask file: then `init` is empty)."""
    found = read_ticket(path)
    meta = found.metadata
    norm = found.meta_json("normalization")
    return Ticket(
        masks=found.masks,
        init=found.init,
        model=meta.get("model"),
        dataset=meta.get("dataset"),
        mean=tuple(norm["mean"]) if norm.get("mean") else None,
        std=tuple(norm["std"]) if norm.get("std") else None,
        level=int(meta["level"]) if "level" in meta else None,
        metrics=found.meta_json("metrics"),
        spec=found.meta_json("spec"),
    )


def suggest_name_map(ticket: Ticket, module: nn.Module) -> dict[str, str]:
    """Ticket names paired with the module's state-dict entries of the same shape, in order
    (a proposal for `name_map` when the layers are the same but named differently)."""
    return _by_shape(ticket.init, module.state_dict())


def _by_shape(
    init: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor]
) -> dict[str, str]:
    free = list(state)
    out: dict[str, str] = {}
    for name, tensor in init.items():
        for candidate in free:
            if tuple(state[candidate].shape) == tuple(tensor.shape):
                out[name] = candidate
                free.remove(candidate)
                break
    return out


def _renamer(name_map: NameMap | None) -> Callable[[str], str]:
    if name_map is None:
        return lambda n: n
    if callable(name_map):
        return name_map
    mapping = dict(name_map)
    return lambda n: mapping.get(n, n)


def _no_match(
    unmatched: list[str],
    init: Mapping[str, torch.Tensor],
    state: Mapping[str, torch.Tensor],
    mapped: bool,
) -> str:
    proposal = _by_shape(init, state)
    msg = (
        f"the model has no {', '.join(unmatched)}"
        f"{' (after name_map)' if mapped else ''}; its entries are {', '.join(state)}."
    )
    if len(proposal) == len(init):
        msg += f" Matching by shape in order gives name_map={proposal!r}"
    return msg


__all__ = ["MaskHandle", "Ticket", "load_ticket", "suggest_name_map"]
