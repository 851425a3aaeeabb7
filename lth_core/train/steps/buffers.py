"""Tensors kept from step to step by the hand-written LeNet steps (one run and stacked).

A fresh 940 KB first-layer gradient each step is an mmap, page faults and a munmap in glibc's
allocator, whose cost varies with what else the process allocated; so activations and
gradients are written into buffers allocated once per batch size (the kernels' out= forms).
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def allocator(like: torch.Tensor) -> Callable[..., torch.Tensor]:
    """empty(*shape): an uninitialized tensor of like's dtype on like's device."""

    def empty(*shape: int) -> torch.Tensor:
        return torch.empty(shape, dtype=like.dtype, device=like.device)

    return empty
