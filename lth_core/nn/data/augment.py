"""Random horizontal flips and 4-pixel pad-and-crop, for a whole batch at once on its device."""

from __future__ import annotations

import torch


def flip_and_crop(
    x: torch.Tensor, generator: torch.Generator, pad_value: tuple[float, ...], pad: int = 4
) -> torch.Tensor:
    n, c, h, w = x.shape
    device = x.device
    flip = torch.rand(n, device=device, generator=generator) < 0.5
    x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
    padded = x.new_empty((n, c, h + 2 * pad, w + 2 * pad))
    padded[:] = torch.tensor(pad_value, device=device, dtype=x.dtype).view(1, c, 1, 1)
    padded[:, :, pad : pad + h, pad : pad + w] = x
    dy = torch.randint(0, 2 * pad + 1, (n,), device=device, generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), device=device, generator=generator)
    rows = (dy.view(n, 1) + torch.arange(h, device=device)).view(n, 1, h, 1)
    cols = (dx.view(n, 1) + torch.arange(w, device=device)).view(n, 1, 1, w)
    batch = torch.arange(n, device=device).view(n, 1, 1, 1)
    chan = torch.arange(c, device=device).view(1, c, 1, 1)
    return padded[batch, chan, rows, cols]
