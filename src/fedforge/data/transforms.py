"""Batched tensor transforms: uint8 -> normalized float, plus label-safe augmentation.

They run on whole index-sliced batches (no per-sample Python, no DataLoader workers) and
draw randomness only from the generator they are given, so training stays seeded.
"""

from __future__ import annotations

import torch


class BatchTransform:
    """Normalizes with the training set's channel statistics; optionally crops and flips."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, augment: bool = False, hflip: bool = False) -> None:
        self.scale = (1.0 / (255.0 * std)).view(1, -1, 1, 1)
        self.shift = (-mean / std).view(1, -1, 1, 1)
        self.augment = augment
        self.hflip = hflip

    def to(self, device: torch.device) -> BatchTransform:
        self.scale, self.shift = self.scale.to(device), self.shift.to(device)
        return self

    def from_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize float images already scaled to [0, 1] (e.g. after SSL view augmentation)."""
        return torch.addcmul(self.shift, x, self.scale * 255.0)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Eval when `generator` is None; training augmentation (if enabled) otherwise."""
        x = torch.addcmul(self.shift, images.float(), self.scale)
        if self.augment and generator is not None:
            x = random_crop(x, max(1, x.shape[-1] // 8), generator)
            if self.hflip:
                x = random_hflip(x, generator)
        return x


def rand(n: int, generator: torch.Generator, device: torch.device, high: int | None = None) -> torch.Tensor:
    # Draw on the generator's device (CPU here), then move: keeps CPU and GPU runs identical.
    if high is None:
        return torch.rand(n, generator=generator).to(device)
    return torch.randint(0, high, (n,), generator=generator).to(device)


def random_crop(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by `pad` and take a random same-size crop per image, in one gather."""
    b, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    rows = rand(b, generator, x.device, 2 * pad + 1)[:, None] + torch.arange(h, device=x.device)
    cols = rand(b, generator, x.device, 2 * pad + 1)[:, None] + torch.arange(w, device=x.device)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def random_hflip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = rand(x.shape[0], generator, x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)
