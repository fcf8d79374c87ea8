"""The features / head split is the last Linear layer, on every registered classifier."""

import pytest
import torch

from fedforge.engine.weights import FlatModel
from fedforge.errors import ConfigError
from fedforge.models import MODELS
from fedforge.models.split import FeaturesHead


@pytest.mark.parametrize("name", ["mlp", "cnn", "wscnn", "resnet18", "mobilenet_v3_small"])
def test_features_feed_the_head_and_the_head_gives_the_logits(name):
    model = MODELS.get(name)((3, 32, 32), 10).eval()
    split = FeaturesHead.of(model)
    x = torch.randn(2, 3, 32, 32)
    features, logits = split.forward(model, x)
    assert logits.shape == (2, 10) and torch.allclose(split.head(model)(features), logits)
    flat = FlatModel(model)
    positions = split.head_positions(flat.layout)
    head = split.head(model)
    assert len(positions) == head.weight.numel() + head.bias.numel()


def test_a_model_without_a_linear_layer_is_refused():
    with pytest.raises(ConfigError, match="no Linear layer"):
        FeaturesHead.of(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3)))
