"""Fixed-point quantization into the ring Z_(2^bits), where masks cancel exactly.

A client's weighted update w * d is clipped to +-range per coordinate, divided by the round's
`step` and rounded stochastically (unbiased); negatives wrap around the ring. The server chooses
`step` from the cohort's total weight W so the sum of every level stays within half the ring:
|sum| <= range * W < 2^(bits-1) * step. The error of the decoded sum is below n * step.
"""

from __future__ import annotations

import numpy as np
import torch


def round_step(clip_range: float, total_weight: float, bits: int) -> float:
    """The quantization step for a round whose clients' weights add up to `total_weight` (4x headroom)."""
    return 4.0 * clip_range * max(total_weight, 1.0) / 2.0**bits


def quantize(
    delta: torch.Tensor, weight: float, step: float, clip_range: float, bits: int, generator: torch.Generator
) -> tuple[torch.Tensor, int]:
    """`weight * delta` as int64 ring elements (each coordinate of `delta` clipped to +-clip_range), and
    how many coordinates were clipped. `generator` drives the stochastic rounding."""
    delta = delta.detach().to(torch.float64).cpu()
    clipped = int((delta.abs() > clip_range).sum())
    scaled = delta.clamp(-clip_range, clip_range) * (weight / step)
    noise = torch.rand(scaled.shape, generator=generator, dtype=torch.float64)
    levels = torch.floor(scaled + noise).to(torch.int64)
    return levels & mask_of(bits), clipped


def mask_of(bits: int) -> int:
    return (1 << bits) - 1


def decode(total: torch.Tensor, step: float, bits: int) -> torch.Tensor:
    """The float64 sum a ring element stands for (the upper half of the ring is negative)."""
    total = total & mask_of(bits)
    signed = torch.where(total >= (1 << (bits - 1)), total - (1 << bits), total)
    return signed.to(torch.float64) * step


def _wire_dtype(bits: int) -> str:
    return "<u4" if bits <= 32 else "<i8"  # a 32-bit ring travels in 4 bytes per element, like a float


def packed_size(length: int, bits: int) -> int:
    return length * np.dtype(_wire_dtype(bits)).itemsize


def pack(levels: torch.Tensor, bits: int) -> bytes:
    return levels.numpy().astype(_wire_dtype(bits)).tobytes()


def unpack(raw: bytes, bits: int) -> torch.Tensor:
    return torch.from_numpy(np.frombuffer(raw, dtype=_wire_dtype(bits)).astype(np.int64))
