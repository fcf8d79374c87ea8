"""Object detectors: torchvision's, by name and from scratch, and `fcos_tiny` for CPU runs.

Every detector is a torchvision detection model: in training mode `model(images, targets)`
returns its loss dict, in eval mode `model(images)` returns one `{boxes, scores, labels}` per
image (tasks/detection.py). Images go in as float [0, 1]; the model's own transform
normalizes them. `num_classes` counts the background (class 0), as torchvision expects.
Nothing is downloaded: `weights=None` always, and `model.weights: PATH` loads a local file.

`fcos_tiny` is torchvision's FCOS (its head, losses, matching and post-processing) on a
small plain conv backbone with a light top-down feature pyramid, about 1 M parameters,
trainable on a CPU in minutes on 64 px scenes. `norm: ws` makes it normalization-free
(weight-standardized convs, no BatchNorm or GroupNorm) for FedWon; `norm: batch` keeps
BatchNorm in the backbone, which FedBN keeps local.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from fedforge.errors import ConfigError
from fedforge.models import MODELS
from fedforge.models.ws import to_normalization_free

Norm = Annotated[
    Literal["batch", "ws"],
    Field(description="batch: BatchNorm in the backbone (FedBN keeps it local); ws: normalization-free for FedWon"),
]


def conv_block(c_in: int, c_out: int, stride: int, norm: str = "batch") -> nn.Sequential:
    """3x3 conv, BatchNorm (or GroupNorm of 8 groups), ReLU: the unit of the tiny backbones
    (made WS by `norm: ws`)."""
    layer = nn.GroupNorm(8, c_out) if norm == "group" else nn.BatchNorm2d(c_out)
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), layer, nn.ReLU(inplace=True))


class TinyPyramid(nn.Module):
    """A plain conv backbone (strides 2..32) with a top-down pyramid over its last `levels` stages.

    Returns an OrderedDict of `levels` maps with `out_channels` each (strides 8, 16, 32 for 3
    levels), the contract torchvision's detection heads take."""

    def __init__(self, in_channels: int, widths: tuple[int, ...], out_channels: int, levels: int) -> None:
        super().__init__()
        stages, c = [], in_channels
        for w in widths:
            stages.append(nn.Sequential(conv_block(c, w, 2), conv_block(w, w, 1)))
            c = w
        self.stages = nn.ModuleList(stages)
        self.levels = levels
        self.lateral = nn.ModuleList(nn.Conv2d(w, out_channels, 1) for w in widths[-levels:])
        self.smooth = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in range(levels))
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        feats = feats[-self.levels :]
        maps = [lat(f) for lat, f in zip(self.lateral, feats, strict=True)]
        for i in range(len(maps) - 2, -1, -1):  # top-down: coarse semantics into finer maps
            maps[i] = maps[i] + F.interpolate(maps[i + 1], size=maps[i].shape[-2:], mode="nearest")
        return OrderedDict((str(i), sm(m)) for i, (sm, m) in enumerate(zip(self.smooth, maps, strict=True)))


@MODELS.register("fcos_tiny")
def fcos_tiny(
    input_shape: tuple[int, int, int],
    num_classes: int,
    *,
    width: Annotated[int, Field(ge=8, description="channels of the first backbone stage (default 24)")] = 24,
    head_channels: Annotated[int, Field(ge=32, multiple_of=32, description="pyramid/head width")] = 64,
    head_convs: Annotated[int, Field(ge=1, description="convs in each head tower (default 2)")] = 2,
    norm: Norm = "batch",
    score_thresh: Annotated[float, Field(ge=0, lt=1, description="drop detections below this score")] = 0.05,
) -> nn.Module:
    """FCOS (torchvision's head and losses) on a ~1 M-parameter plain backbone, strides 8/16/32."""
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.fcos import FCOSHead

    c, h, w = input_shape
    _check_size("fcos_tiny", h, w, 32)
    widths = (width, 2 * width, 4 * width, 6 * width, 8 * width)  # strides 2, 4, 8, 16, 32
    backbone = TinyPyramid(c, widths, head_channels, levels=3)
    anchors = AnchorGenerator(((8,), (16,), (32,)), ((1.0,),) * 3)  # one location per cell; size = stride
    head = FCOSHead(head_channels, 1, num_classes, num_convs=head_convs)
    model = FCOS(
        backbone,
        num_classes,
        min_size=min(h, w),
        max_size=max(h, w),
        image_mean=[0.5] * c,
        image_std=[0.25] * c,
        anchor_generator=anchors,
        head=head,
        score_thresh=score_thresh,
        detections_per_img=100,
    )
    # Boxes start at twice the level's stride instead of at zero: the regression output is a ReLU,
    # and from a zero start (torchvision's init, made for pretrained backbones) it often never wakes.
    nn.init.constant_(model.head.regression_head.bbox_reg.bias, 1.0)
    if norm == "ws":  # the towers lose their norms; the predictors (and their prior bias) stay plain convs
        for part in (model.backbone, model.head.classification_head.conv, model.head.regression_head.conv):
            to_normalization_free(part)
    return model


def _check_size(name: str, h: int, w: int, least: int) -> None:
    if min(h, w) < least:
        raise ConfigError(
            f"model {name} needs images of at least {least}x{least} pixels, got {h}x{w}; set data.image_size"
        )


def _rgb(name: str, channels: int) -> None:
    if channels != 3:
        raise ConfigError(
            f"model {name} is built for RGB images, but the data has {channels} channel(s); "
            "use an RGB dataset or fcos_tiny / lraspp_tiny, which take any channel count"
        )


def _torchvision_detector(name: str, builder: str, fixed_size: bool = False):
    """Register torchvision's `builder` as `name`: from scratch, sized to the data unless fixed."""

    def factory(
        input_shape: tuple[int, int, int],
        num_classes: int,
        *,
        score_thresh: Annotated[float, Field(ge=0, lt=1, description="drop detections below this score")] = 0.05,
    ) -> nn.Module:
        import torchvision.models.detection as detection

        c, h, w = input_shape
        _rgb(name, c)
        size = {} if fixed_size else {"min_size": min(h, w), "max_size": max(h, w)}
        thresh = {"box_score_thresh": score_thresh} if "rcnn" in builder else {"score_thresh": score_thresh}
        return getattr(detection, builder)(
            weights=None, weights_backbone=None, num_classes=num_classes, **size, **thresh
        )

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"torchvision's {builder}, from scratch (weights=None; model.weights loads a local file)."
    MODELS.add(name, factory)


_torchvision_detector("fasterrcnn_mobilenet_v3_large_320_fpn", "fasterrcnn_mobilenet_v3_large_320_fpn")
_torchvision_detector("fcos", "fcos_resnet50_fpn")
_torchvision_detector("retinanet", "retinanet_resnet50_fpn")
_torchvision_detector("ssdlite320", "ssdlite320_mobilenet_v3_large", fixed_size=True)
