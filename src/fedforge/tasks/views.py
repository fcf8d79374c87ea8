"""Random views for self-supervised learning, generated batched on tensors.

Every image of a batch gets its own random crop box, flip, colour jitter and blur, drawn
from the seeded generator (on CPU, then moved, so CPU and GPU runs see the same draws).
The crop is torchvision's `roi_align` (one call for the whole batch, a box per image);
grayscale and blur are torchvision.transforms.v2 functionals. torchvision is imported where
it is used: importing it costs about a second, which runs without SSL views never need.
"""

from __future__ import annotations

import math

import torch

from fedforge.data.transforms import rand, random_hflip


class ViewAugment:
    """SimCLR/BYOL-style augmentation: crop-resize, flip, colour jitter, grayscale, blur."""

    def __init__(
        self,
        crop_scale: tuple[float, float] = (0.2, 1.0),
        flip: bool = True,
        jitter: float = 0.4,
        jitter_prob: float = 0.8,
        grayscale_prob: float = 0.2,
        blur_prob: float = 0.5,
    ) -> None:
        self.crop_scale, self.flip, self.jitter = crop_scale, flip, jitter
        self.jitter_prob, self.grayscale_prob, self.blur_prob = jitter_prob, grayscale_prob, blur_prob

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """uint8 [B, C, H, W] -> one random view per image, float in [0, 1]."""
        from torchvision.transforms.v2 import functional as TF

        x = images.float().div_(255.0)
        x = self.resized_crop(x, generator)
        if self.flip:
            x = random_hflip(x, generator)
        if self.jitter > 0:
            x = self.colour_jitter(x, generator)
        if x.shape[1] == 3 and self.grayscale_prob > 0:
            gray = TF.rgb_to_grayscale(x, num_output_channels=3)
            chosen = rand(len(x), generator, x.device) < self.grayscale_prob
            x = torch.where(chosen.view(-1, 1, 1, 1), gray, x)
        if self.blur_prob > 0:
            x = self.blur(x, generator)
        return x

    def resized_crop(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A box of random area share and aspect ratio per image, resized back to H x W."""
        from torchvision.ops import roi_align

        b, _, h, w = x.shape
        lo, hi = self.crop_scale
        area = (lo + (hi - lo) * rand(b, generator, x.device)) * h * w
        log_ratio = math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * rand(b, generator, x.device)
        ratio = torch.exp(log_ratio)
        bw = torch.sqrt(area * ratio).clamp(1.0, w)
        bh = torch.sqrt(area / ratio).clamp(1.0, h)
        x0 = (w - bw) * rand(b, generator, x.device)
        y0 = (h - bh) * rand(b, generator, x.device)
        boxes = torch.stack([torch.arange(b, device=x.device, dtype=x.dtype), x0, y0, x0 + bw, y0 + bh], dim=1)
        return roi_align(x, boxes, output_size=(h, w), spatial_scale=1.0, sampling_ratio=2, aligned=True)

    def colour_jitter(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Brightness, contrast (and saturation on colour images), each factor per image."""
        from torchvision.transforms.v2 import functional as TF

        b, c = x.shape[:2]
        apply = (rand(b, generator, x.device) < self.jitter_prob).view(b, 1, 1, 1)

        def factor() -> torch.Tensor:
            f = 1 + self.jitter * (2 * rand(b, generator, x.device) - 1)
            return torch.where(apply, f.view(b, 1, 1, 1), torch.ones_like(f).view(b, 1, 1, 1))

        x = (x * factor()).clamp_(0, 1)
        gray = TF.rgb_to_grayscale(x) if c == 3 else x
        mean = gray.mean(dim=(1, 2, 3), keepdim=True)
        x = torch.lerp(mean, x, factor()).clamp_(0, 1)
        if c == 3:
            x = torch.lerp(TF.rgb_to_grayscale(x, num_output_channels=3), x, factor()).clamp_(0, 1)
        return x

    def blur(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Gaussian blur (kernel ~10% of the image side) on a random subset of the batch."""
        from torchvision.transforms.v2 import functional as TF

        chosen = torch.nonzero(rand(len(x), generator, x.device) < self.blur_prob).squeeze(1)
        if len(chosen) == 0:
            return x
        kernel = max(3, int(0.1 * x.shape[-1]) // 2 * 2 + 1)
        sigma = 0.1 + 1.9 * float(torch.rand(1, generator=generator))
        x = x.clone()
        x[chosen] = TF.gaussian_blur(x[chosen], kernel_size=[kernel, kernel], sigma=[sigma, sigma])
        return x
