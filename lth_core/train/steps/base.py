"""What the training loop needs of a way to compute steps: the stepper interface.

A stepper holds K members (K = 1 for a single run) and computes, for a batch, every member's
mean loss and the gradients of its parameters; it evaluates every member on a data set and
hands out a member's weights. The loop (lth_core.train.loop) does the rest once for all steppers:
batches, the optimizer update over `params`, the masks, evaluations and the callbacks.
"""

from __future__ import annotations

from typing import Protocol

import torch


class Stepper(Protocol):
    k: int
    """Members trained together (1: one run)."""
    stacked: bool
    """Whether `params` carry a leading member dimension (masks are stacked to match)."""
    params: dict[str, torch.Tensor]
    """The trainable tensors by state-dict name, in the order of the gradients returned."""

    def loss_and_grads(
        self, x: torch.Tensor, y: torch.Tensor, shared: bool
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Per-member mean losses (a scalar when k == 1, else (K,)) and gradients in `params`
        order. `shared`: x is one batch (B, ...) for all members, else (K, B, ...); y is
        (K * B,). Returned tensors may be buffers reused by the next call."""
        ...

    def evaluate(
        self, x: torch.Tensor, y: torch.Tensor, keep: list[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-member mean loss and accuracy, shape (K,), as device tensors (no host sync);
        `keep` gets the per-example correctness appended, shape (K, N)."""
        ...

    def state_dict(self, member: int) -> dict[str, torch.Tensor]:
        """A copy of member's full state dict (parameters and buffers) as it is now."""
        ...

    def finish(self) -> None:
        """After training: each member's module holds its trained tensors."""
        ...
