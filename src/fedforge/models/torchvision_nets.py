"""torchvision backbones adapted to small inputs, any channel count and the dataset's classes.

Weights are always initialized from scratch: nothing is downloaded at run time. torchvision
is imported when a network is built (importing it costs about a second at start-up).
"""

from __future__ import annotations

from torch import nn

from fedforge.models import MODELS
from fedforge.models.ws import to_normalization_free

SMALL_INPUT = 64  # below this side length, the ImageNet stem's early downsampling is removed


def _stem(in_channels: int, out_channels: int, **conv: int) -> nn.Conv2d:
    """A replacement first conv, initialized as torchvision initializes its convs."""
    layer = nn.Conv2d(in_channels, out_channels, bias=False, **conv)
    nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
    return layer


def _resnet(builder, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    c, h, w = input_shape
    net = builder(weights=None, num_classes=num_classes)
    if min(h, w) < SMALL_INPUT:
        net.conv1 = _stem(c, 64, kernel_size=3, stride=1, padding=1)
        net.maxpool = nn.Identity()
    elif c != 3:
        net.conv1 = _stem(c, 64, kernel_size=7, stride=2, padding=3)
    return net


@MODELS.register("resnet18")
def resnet18(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """ResNet-18; 3x3 stride-1 stem and no max-pool for inputs under 64 px (CIFAR-style)."""
    from torchvision.models import resnet18 as build

    return _resnet(build, input_shape, num_classes)


@MODELS.register("resnet34")
def resnet34(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """ResNet-34, adapted like resnet18."""
    from torchvision.models import resnet34 as build

    return _resnet(build, input_shape, num_classes)


@MODELS.register("mobilenet_v3_small")
def mobilenet_v3_small(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """MobileNetV3-Small; stride-1 first conv for inputs under 64 px."""
    c, h, w = input_shape
    from torchvision.models import mobilenet_v3_small as build

    net = build(weights=None, num_classes=num_classes)
    first = net.features[0][0]
    stride = 1 if min(h, w) < SMALL_INPUT else 2
    net.features[0][0] = _stem(c, first.out_channels, kernel_size=3, stride=stride, padding=1)
    return net


@MODELS.register("nf_resnet18")
def nf_resnet18(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """ResNet-18 without normalization: BN removed, every conv a WSConv2d (FedWon)."""
    return to_normalization_free(resnet18(input_shape, num_classes))
