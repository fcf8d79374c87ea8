"""Detectors and segmenters by registry name: sizes, contracts, and the FedBN / FedWon variants."""

from __future__ import annotations

import pytest
import torch

from fedforge.algorithms.fedbn import FedBN
from fedforge.engine.weights import FlatModel
from fedforge.errors import ConfigError
from fedforge.models import MODELS, build_network
from fedforge.models.ws import has_normalization


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_tiny_models_have_the_advertised_size():
    assert 0.8e6 < n_params(MODELS.get("fcos_tiny")((3, 64, 64), 7)) < 1.5e6
    assert 0.2e6 < n_params(MODELS.get("lraspp_tiny")((3, 64, 64), 7)) < 0.4e6


def test_fcos_tiny_trains_on_a_loss_dict_and_predicts_boxes():
    model = MODELS.get("fcos_tiny")((3, 64, 64), 4)
    targets = [{"boxes": torch.tensor([[8.0, 8, 40, 40]]), "labels": torch.tensor([2])}] * 2
    losses = model([torch.rand(3, 64, 64)] * 2, targets)
    assert set(losses) == {"classification", "bbox_regression", "bbox_ctrness"}
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        out = model([torch.rand(3, 64, 64)])
    assert set(out[0]) == {"boxes", "scores", "labels"} and out[0]["boxes"].shape[1] == 4


def test_lraspp_tiny_gives_full_resolution_logits():
    out = MODELS.get("lraspp_tiny")((1, 48, 40), 5)(torch.rand(2, 1, 48, 40))["out"]
    assert out.shape == (2, 5, 48, 40)


@pytest.mark.parametrize("name", ["fcos_tiny", "lraspp_tiny"])
def test_ws_variants_are_normalization_free_and_batch_variants_have_local_bn(name):
    ws = MODELS.get(name)((3, 64, 64), 5, norm="ws")
    assert has_normalization(ws) == []
    flat = FlatModel(MODELS.get(name)((3, 64, 64), 5))
    local = FedBN().client_role(flat, None)
    assert len(local) > 0  # FedBN finds the backbone's BatchNorm layers to keep local


def test_fcos_tiny_ws_keeps_the_predictors_plain():
    model = MODELS.get("fcos_tiny")((3, 64, 64), 5, norm="ws")
    assert type(model.head.classification_head.cls_logits) is torch.nn.Conv2d  # its focal-loss prior stays


@pytest.mark.parametrize(
    "name",
    [
        "fasterrcnn_mobilenet_v3_large_320_fpn",
        "ssdlite320",
        "lraspp_mobilenet_v3_large",
        "deeplabv3_mobilenet_v3_large",
    ],
)
def test_torchvision_dense_models_build_from_scratch_by_name(name):
    model = build_network(MODELS.get(name), {}, (3, 64, 64), 4, seed=0)
    model.eval()
    with torch.no_grad():
        out = model([torch.rand(3, 64, 64)]) if "320" in name else model(torch.rand(1, 3, 64, 64))
    assert out is not None


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fcos", "retinanet", "fcn_resnet50"])
def test_resnet50_dense_models_build_by_name(name):
    assert n_params(build_network(MODELS.get(name), {}, (3, 64, 64), 4, seed=0)) > 1e7


def test_torchvision_dense_models_need_rgb():
    with pytest.raises(ConfigError, match="RGB"):
        MODELS.get("ssdlite320")((1, 64, 64), 4)
    with pytest.raises(ConfigError, match="data.image_size"):
        MODELS.get("fcos_tiny")((3, 16, 16), 4)


def test_same_seed_same_detector():
    a = build_network(MODELS.get("fcos_tiny"), {}, (3, 64, 64), 4, seed=5)
    b = build_network(MODELS.get("fcos_tiny"), {}, (3, 64, 64), 4, seed=5)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
