"""torchvision backbones adapted to small inputs, any channel count and the dataset's classes.

Weights are always initialized from scratch: nothing is downloaded at run time. torchvision
is imported when a network is built (importing it costs about a second at start-up).
"""

from __future__ import annotations

import functools
from typing import Any

from torch import nn

from fedforge.errors import ConfigError, UnknownNameError, did_you_mean
from fedforge.models import MODELS, ModelFactory
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


# torchvision:NAME, any classification model torchvision ships, built with weights=None.
NO_AUX = {"googlenet", "inception_v3"}  # train-mode aux outputs would break the plain-logits contract


@functools.cache
def torchvision_classifier(name: str) -> ModelFactory:
    """The factory for `torchvision:NAME` (cached, so its Params and identity are stable)."""
    import torchvision
    from torchvision.models import list_models

    known = list_models(module=torchvision.models)
    if name not in known:
        raise UnknownNameError(
            f"unknown model 'torchvision:{name}'{did_you_mean(name, known)}; torchvision's classification models: "
            f"{', '.join(known)}"
        )

    def build(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
        from torchvision.models import get_model

        c, h, w = input_shape
        options: dict[str, Any] = {"aux_logits": False, "init_weights": True} if name in NO_AUX else {}
        if name.startswith("vit_"):
            options["image_size"] = h
        try:
            net = get_model(name, weights=None, num_classes=num_classes, **options)
        except (ValueError, AssertionError, TypeError) as err:
            raise ConfigError(
                f"model torchvision:{name} cannot be built for {c}x{h}x{w} inputs ({err}); set data.image_size "
                "to a size it takes (e.g. 224)"
            ) from None
        if c != 3:
            _replace_first_conv(net, c)
        _check_forward(net, input_shape, f"torchvision:{name}")
        return net

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"torchvision's {name}, from scratch (model.weights: a local file to start from)."
    return build


def _replace_first_conv(net: nn.Module, in_channels: int) -> None:
    """Give the first 3-channel conv the data's channel count (same kernel, stride, init)."""
    for parent in net.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Conv2d) and child.in_channels == 3:
                conv = nn.Conv2d(
                    in_channels,
                    child.out_channels,
                    child.kernel_size,
                    child.stride,
                    child.padding,
                    child.dilation,
                    child.groups if child.groups == 1 else in_channels,
                    bias=child.bias is not None,
                )
                nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
                setattr(parent, child_name, conv)
                return


def _check_forward(net: nn.Module, input_shape: tuple[int, int, int], label: str) -> None:
    """One no-grad forward on two blank images: a too-small input fails here, named, not mid-round."""
    import torch

    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(torch.zeros(2, *input_shape))
    except (RuntimeError, ValueError, AssertionError) as err:
        c, h, w = input_shape
        raise ConfigError(
            f"model {label} cannot take {c}x{h}x{w} inputs ({str(err).splitlines()[0]}); set data.image_size "
            "larger (e.g. data.image_size=64 or 224)"
        ) from None
    finally:
        net.train(was_training)
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        raise ConfigError(f"model {label} returns {type(out).__name__}, not [batch, classes] logits")


MODELS.add_family(
    "torchvision", torchvision_classifier, "any torchvision classification model, e.g. torchvision:efficientnet_b0"
)
