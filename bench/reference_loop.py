"""The baseline for bench/speed.py: a training loop written the way most public LTH code is.

What "the usual way" means here, on purpose and without strawmen:
- a torchvision-style Dataset that keeps the raw images and, per sample, turns one into a PIL
  image and runs `transforms.ToTensor()` + `transforms.Normalize` (for float data that has no
  image form, only the per-sample Normalize), batched by `torch.utils.data.DataLoader`
  (shuffle, batch 60, drop_last, no worker processes: extra processes only compete for the
  same two cores here);
- the mask applied with `torch.nn.utils.prune.custom_from_mask`, whose forward pre-hook
  recomputes `weight = weight_orig * weight_mask` on every forward;
- `torch.optim.Adam` with its defaults, `zero_grad()`, `loss.backward()`, `step()`,
  and `loss.item()` every step for a running loss;
- evaluation every `eval_every` iterations over validation and test through DataLoaders of
  1,000 examples (larger than most use, which favours the reference).
The model is the engine's own architecture and initialization, so both loops do the same
arithmetic and only the machinery around it differs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from PIL import Image
from torch import nn
from torch.nn.utils import prune
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms


class ImageDataset(Dataset):
    """Samples made one at a time: raw uint8 image -> PIL -> ToTensor -> Normalize."""

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, transform: Callable[..., torch.Tensor]
    ) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = self.images[i]
        if image.dtype == torch.uint8:
            image = Image.fromarray(image.numpy(), mode="L")
        return self.transform(image), int(self.labels[i])


def mnist_transform(mean: float, std: float) -> Callable[..., torch.Tensor]:
    return transforms.Compose([transforms.ToTensor(), transforms.Normalize((mean,), (std,))])


def tensor_transform(channels: int) -> Callable[..., torch.Tensor]:
    return transforms.Normalize((0.0,) * channels, (1.0,) * channels)


@dataclass
class ReferenceData:
    train: Dataset
    val: Dataset
    test: Dataset


def apply_masks(model: nn.Module, mask: Mapping[str, torch.Tensor]) -> None:
    """torch.nn.utils.prune: weight becomes weight_orig * weight_mask via a forward pre-hook."""
    modules = dict(model.named_modules())
    for name, m in mask.items():
        module_name, _, param = name.rpartition(".")
        prune.custom_from_mask(modules[module_name], param, m.to(torch.float32))


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, batch_size: int = 1000) -> tuple[float, float]:
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    for x, y in DataLoader(dataset, batch_size=batch_size):
        logits = model(x)
        loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        n += y.shape[0]
    model.train()
    return loss_sum / n, correct / n


def train_reference(
    model: nn.Module,
    mask: Mapping[str, torch.Tensor],
    data: ReferenceData,
    *,
    learning_rate: float,
    batch_size: int,
    iterations: int,
    eval_every: int | None,
    seed: int,
) -> dict[str, float]:
    """Trains for `iterations` steps; returns timings.

    With `eval_every` set it evaluates before training and every `eval_every` iterations (and
    at the end), at the same points as the engine does; None: never.
    """
    apply_masks(model, mask)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    criterion = nn.CrossEntropyLoss()
    loader = DataLoader(
        data.train,
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(seed),
    )
    history: list[tuple[int, float, float, float]] = []
    running_loss = 0.0
    eval_seconds = 0.0
    started = time.perf_counter()
    iteration = 0

    def record() -> None:
        nonlocal eval_seconds
        t = time.perf_counter()
        val_loss, val_acc = evaluate(model, data.val)
        _, test_acc = evaluate(model, data.test)
        history.append((iteration, val_loss, val_acc, test_acc))
        eval_seconds += time.perf_counter() - t

    model.train()
    if eval_every:
        record()
    while iteration < iterations:
        for x, y in loader:
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            iteration += 1
            if eval_every and (iteration % eval_every == 0 or iteration == iterations):
                record()
            if iteration == iterations:
                break
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "eval_seconds": eval_seconds,
        "iterations": iterations,
        "final_test_accuracy": history[-1][3] if history else float("nan"),
    }
