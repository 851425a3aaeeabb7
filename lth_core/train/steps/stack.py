"""What the two stacked steppers share: K members' tensors stacked along dim 0.

Evaluation runs every member on the same chunk of examples; a member's state dict and the
write-back at the end slice its row out of every stacked tensor.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from lth_core.train.steps.module import eval_chunk_size


class Stack:
    stacked = True

    def __init__(self, models: Sequence[nn.Module]) -> None:
        if not models:
            raise ValueError("at least one member is needed")
        self.models = list(models)
        self.k = len(models)
        self.params: dict[str, torch.Tensor] = {}
        self.buffers: dict[str, torch.Tensor] = {}
        self._chunk: int | None = None

    def __call__(self, x: torch.Tensor, shared: bool) -> torch.Tensor:
        """Logits (K, B, classes); x is (B, ...) for all members or (K, B, ...) per member."""
        raise NotImplementedError

    @torch.inference_mode()
    def evaluate(
        self, x: torch.Tensor, y: torch.Tensor, keep: list[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-member mean loss and accuracy; `keep` gets the (K, N) per-example correctness."""
        if self._chunk is None:
            self._chunk = max(1, eval_chunk_size(self.models[0], x[0].numel()) // self.k)
        k, chunk = self.k, self._chunk
        loss_sum = torch.zeros(k, device=x.device, dtype=torch.float64)
        correct = torch.zeros(k, device=x.device, dtype=torch.int64)
        hits = []
        for start in range(0, x.shape[0], chunk):
            logits = self(x[start : start + chunk], shared=True)
            target = y[start : start + chunk]
            per_sample = F.cross_entropy(
                logits.flatten(0, 1), target.repeat(k), reduction="none"
            ).view(k, -1)
            loss_sum += per_sample.sum(1).double()
            hit = logits.argmax(2) == target
            correct += hit.sum(1)
            hits.append(hit)
        if keep is not None:
            keep.append(torch.cat(hits, dim=1))
        n = x.shape[0]
        return loss_sum / n, correct.double() / n

    def _member_tensor(self, name: str, member: int) -> torch.Tensor:
        stacked = self.params[name] if name in self.params else self.buffers[name]
        return stacked[member]

    def state_dict(self, member: int) -> dict[str, torch.Tensor]:
        names = self.models[member].state_dict().keys()
        return {n: self._member_tensor(n, member).detach().clone() for n in names}

    def finish(self) -> None:
        with torch.no_grad():
            for k, model in enumerate(self.models):
                for name, tensor in model.state_dict().items():
                    tensor.copy_(self._member_tensor(name, k))
