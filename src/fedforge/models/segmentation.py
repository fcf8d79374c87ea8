"""Semantic segmenters: torchvision's, by name and from scratch, and `lraspp_tiny` for CPU runs.

A segmenter maps normalized images [B, C, H, W] to logits [B, K, H, W] (torchvision's return an
OrderedDict whose "out" entry holds them; tasks/segmentation.py reads either). `num_classes`
counts the background (class 0). Nothing is downloaded: `weights=None` always.

`lraspp_tiny` is torchvision's LR-ASPP head on a small plain conv backbone ("low" features
at stride 4, "high" at stride 8), about 0.3 M parameters. MobileNet's high stride of 16 leaves
a 4x4 map on a 64 px scene; at stride 8 the same net reached mIoU 0.47 instead of 0.40 after
8 centralized epochs on `scenes`.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import nn

from fedforge.models import MODELS
from fedforge.models.detection import _check_size, _rgb, conv_block
from fedforge.models.ws import to_normalization_free


class LowHighBackbone(nn.Module):
    """Plain conv stages; returns {"low": stride-4 features, "high": stride-8 (or 16) features}."""

    def __init__(
        self, in_channels: int, widths: tuple[int, int, int, int], high_stride: int = 8, norm: str = "batch"
    ) -> None:
        super().__init__()
        stages, c = [], in_channels
        strides = (2, 2, 2, 2) if high_stride == 16 else (2, 2, 2, 1)
        for w, stride in zip(widths, strides, strict=True):
            stages.append(nn.Sequential(conv_block(c, w, stride, norm), conv_block(w, w, 1, norm)))
            c = w
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        low = self.stages[1](self.stages[0](x))
        return OrderedDict(low=low, high=self.stages[3](self.stages[2](low)))


@MODELS.register("lraspp_tiny")
def lraspp_tiny(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    width: Annotated[int, Field(ge=8, description="channels of the first backbone stage (default 24)")] = 24,
    inter_channels: Annotated[int, Field(ge=8, description="LR-ASPP's inner width (default 64)")] = 64,
    high_stride: Annotated[Literal[8, 16], Field(description="stride of the high (semantic) features")] = 8,
    norm: Annotated[
        Literal["batch", "group", "ws"],
        Field(description="batch: BatchNorm (FedBN keeps it local); group: GroupNorm; ws: normalization-free (FedWon)"),
    ] = "batch",
) -> nn.Module:
    """LR-ASPP (torchvision's head) on a ~0.3 M-parameter plain backbone."""
    from torchvision.models.segmentation.lraspp import LRASPP

    c, h, w = input_shape
    _check_size("lraspp_tiny", h, w, 16)
    widths = (width, 2 * width, 3 * width, 4 * width)
    model = LRASPP(LowHighBackbone(c, widths, high_stride, norm), widths[1], widths[3], num_classes, inter_channels)
    return to_normalization_free(model) if norm == "ws" else model


def _torchvision_segmenter(name: str, builder: str) -> None:
    def factory(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
        import torchvision.models.segmentation as segmentation

        _rgb(name, input_shape[0])
        return getattr(segmentation, builder)(weights=None, weights_backbone=None, num_classes=num_classes)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"torchvision's {builder}, from scratch (weights=None; model.weights loads a local file)."
    MODELS.add(name, factory)


_torchvision_segmenter("lraspp_mobilenet_v3_large", "lraspp_mobilenet_v3_large")
_torchvision_segmenter("deeplabv3_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large")
_torchvision_segmenter("fcn_resnet50", "fcn_resnet50")
