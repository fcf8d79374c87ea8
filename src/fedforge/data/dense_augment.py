"""Augmentation for dense targets: boxes and masks move with the image, a whole batch at a time.

Per batch, from the seeded generator only: a horizontal flip per image, one scale-jitter factor
(torchvision.transforms.v2 resizes the batch as `tv_tensors.Image`, `Mask` and `BoundingBoxes`
together) followed by a crop (or zero padding) back to the original size at a random offset
per image, and a brightness and contrast change per image. Boxes are clamped to the crop;
boxes left under 2 px wide or high are dropped with their labels. Padded mask pixels are
IGNORE, so nothing learns the padding as background.
"""

from __future__ import annotations

import torch

from fedforge.data.targets import IGNORE
from fedforge.data.transforms import rand

MIN_SIDE = 2.0  # px: a box cropped thinner than this is no longer an object to find


class DenseAugment:
    def __init__(
        self,
        flip: bool = True,
        scale: tuple[float, float] = (0.75, 1.25),
        brightness: float = 0.3,
        contrast: float = 0.3,
    ) -> None:
        self.flip, self.scale, self.brightness, self.contrast = flip, scale, brightness, contrast

    def __call__(
        self,
        images: torch.Tensor,
        generator: torch.Generator,
        boxes: list[dict[str, torch.Tensor]] | None = None,
        masks: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]] | None, torch.Tensor | None]:
        """uint8 images [B, C, H, W] (+ per-image box dicts, + masks [B, H, W]) -> float [0, 1] images
        and the targets moved with them."""
        from torchvision import tv_tensors
        from torchvision.transforms.v2 import InterpolationMode
        from torchvision.transforms.v2 import functional as tvf

        b, _, h, w = images.shape
        device = images.device
        x = images.float().div_(255.0)
        counts = [len(t["boxes"]) for t in boxes] if boxes is not None else [0] * b
        flat = torch.cat([t["boxes"] for t in boxes]) if boxes is not None else torch.zeros(0, 4, device=device)
        owner = torch.repeat_interleave(torch.arange(b, device=device), torch.tensor(counts, device=device))
        if self.flip:
            flipped = rand(b, generator, device) < 0.5
            x = torch.where(flipped[:, None, None, None], x.flip(-1), x)
            if masks is not None:
                masks = torch.where(flipped[:, None, None], masks.flip(-1), masks)
            f = flipped[owner][:, None]
            flat = torch.where(f, torch.stack([w - flat[:, 2], flat[:, 1], w - flat[:, 0], flat[:, 3]], 1), flat)
        lo, hi = self.scale
        if hi > lo or lo != 1.0:
            s = lo + (hi - lo) * float(torch.rand((), generator=generator))
            size = [max(1, round(h * s)), max(1, round(w * s))]
            x = tvf.resize(tv_tensors.Image(x), size, antialias=True).as_subclass(torch.Tensor)
            bb = tv_tensors.BoundingBoxes(flat, format="XYXY", canvas_size=(h, w))
            flat = tvf.resize(bb, size).as_subclass(torch.Tensor)
            if masks is not None:
                m = tv_tensors.Mask(masks)
                masks = tvf.resize(m, size, interpolation=InterpolationMode.NEAREST_EXACT).as_subclass(torch.Tensor)
            x, flat, masks = self._crop_back(x, flat, owner, masks, h, w, generator)
        if self.brightness > 0 or self.contrast > 0:
            bright = 1 + self.brightness * (2 * rand(b, generator, device) - 1)
            contrast = 1 + self.contrast * (2 * rand(b, generator, device) - 1)
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = ((x - mean) * contrast.view(-1, 1, 1, 1) + mean) * bright.view(-1, 1, 1, 1)
            x = x.clamp_(0, 1)
        if boxes is None:
            return x, None, masks
        keep = ((flat[:, 2] - flat[:, 0]) >= MIN_SIDE) & ((flat[:, 3] - flat[:, 1]) >= MIN_SIDE)
        labels = torch.cat([t["labels"] for t in boxes])
        moved = []
        for i in range(b):
            mine = keep & (owner == i)
            moved.append({"boxes": flat[mine], "labels": labels[mine]})
        return x, moved, masks

    @staticmethod
    def _crop_back(
        x: torch.Tensor,
        flat: torch.Tensor,
        owner: torch.Tensor,
        masks: torch.Tensor | None,
        h: int,
        w: int,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Pad (zeros; IGNORE in masks) to at least h x w, then crop h x w at a random offset per image."""
        b, _, sh, sw = x.shape
        ph, pw = max(0, h - sh), max(0, w - sw)
        top, left = ph // 2, pw // 2
        if ph or pw:
            pad = (left, pw - left, top, ph - top)
            x = torch.nn.functional.pad(x, pad)
            if masks is not None:
                masks = torch.nn.functional.pad(masks, pad, value=IGNORE)
        hh, ww = x.shape[-2:]
        dy = rand(b, generator, x.device, hh - h + 1)
        dx = rand(b, generator, x.device, ww - w + 1)
        rows = dy[:, None] + torch.arange(h, device=x.device)
        cols = dx[:, None] + torch.arange(w, device=x.device)
        batch = torch.arange(b, device=x.device)[:, None, None]
        x = x.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
        if masks is not None:
            masks = masks[batch, rows[:, :, None], cols[:, None, :]]
        shift = torch.stack([left - dx, top - dy, left - dx, top - dy], 1).to(flat.dtype)[owner]
        flat = flat + shift
        bound = torch.tensor([w, h, w, h], dtype=flat.dtype, device=flat.device)
        flat = torch.minimum(flat.clamp_min(0), bound)
        return x.contiguous(), flat, masks
