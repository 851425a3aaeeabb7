"""One run's model as a stepper (K = 1): what the autograd step and the LeNet step share."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    chunk: int,
    keep: list[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss and accuracy as device tensors (no host sync until someone reads them);
    `keep` gets the per-example correctness (bools, shape (N,)) appended: the paired verdicts
    (lth_core.results.verdicts) compare two networks example by example."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=x.device, dtype=torch.float64)
    correct = torch.zeros((), device=x.device, dtype=torch.int64)
    hits = []
    for start in range(0, x.shape[0], chunk):
        logits = model(x[start : start + chunk])
        target = y[start : start + chunk]
        loss_sum += F.cross_entropy(logits, target, reduction="sum").double()
        hit = logits.argmax(1) == target
        correct += hit.sum()
        hits.append(hit)
    if keep is not None:
        keep.append(torch.cat(hits))
    model.train(was_training)
    n = x.shape[0]
    return loss_sum / n, correct.double() / n


def eval_chunk_size(model: nn.Module, input_numel: int) -> int:
    """Large batches for cheap models, smaller ones where activations are big."""
    params = sum(p.numel() for p in model.parameters())
    has_conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
    return 1000 if has_conv else max(1000, min(20_000, 200_000_000 // max(params, input_numel)))


class ModuleStepper:
    """Trains the module's own parameters in place; evaluation in eval mode (dropout off,
    batch norm on running statistics)."""

    k = 1
    stacked = False

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        self._chunk: int | None = None
        model.train()

    def evaluate(
        self, x: torch.Tensor, y: torch.Tensor, keep: list[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self._chunk is None:
            self._chunk = eval_chunk_size(self.model, x[0].numel())
        hits: list[torch.Tensor] | None = [] if keep is not None else None
        loss, accuracy = evaluate(self.model, x, y, self._chunk, hits)
        if keep is not None and hits:
            keep.append(hits[0].reshape(1, -1))
        return loss.reshape(1), accuracy.reshape(1)

    def state_dict(self, member: int) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def finish(self) -> None:
        """The module was trained in place."""
