"""Own models and data: factory conventions, torchvision:NAME, local weights, materialized
datasets and their errors, imports and entry points."""

import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

import fedforge
from fedforge.config import load_config
from fedforge.data.user import as_user_data, from_dataset, from_tensors
from fedforge.errors import ConfigError, DatasetFormatError, UnknownNameError
from fedforge.models import MODELS, build_model, call_factory, check_factory
from fedforge.models.pretrained import load_weights


class Net(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, *, width: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.conv(x).mean((2, 3)))


def test_factories_get_what_their_signature_names():
    net = call_factory(Net, (3, 8, 8), 5, {"width": 6})
    assert net.conv.in_channels == 3 and net.head.out_features == 5 and net.conv.out_channels == 6
    seen = {}

    def by_shape(input_shape, num_classes=2):
        seen["shape"] = input_shape
        return nn.Linear(1, num_classes)

    call_factory(by_shape, (1, 4, 4), 3, {})
    assert seen["shape"] == (1, 4, 4)
    with pytest.raises(ConfigError, match="'depth' has no default"):
        check_factory(lambda num_classes, depth: None)
    with pytest.raises(ConfigError, match="not a torch.nn.Module"):
        call_factory(lambda num_classes: "a string", (1, 4, 4), 2, {})


def test_registered_class_params_are_validated_config_parameters():
    fedforge.register_model("unit_net", replace=True)(Net)
    try:
        cfg = load_config(None, ["model.name=unit_net", "model.width=7"])
        assert cfg.model.params.width == 7
        with pytest.raises(ConfigError, match="width"):
            load_config(None, ["model.name=unit_net", "model.width=seven"])
        assert build_model(cfg.model, (1, 8, 8), 10, seed=0).conv.out_channels == 7
    finally:
        MODELS.remove("unit_net")


def test_torchvision_family_builds_any_classifier_for_small_grayscale_inputs():
    cfg = load_config(None, ["model.name=torchvision:mobilenet_v3_small"])
    net = build_model(cfg.model, (1, 16, 16), 7, seed=0)
    assert net(torch.zeros(2, 1, 16, 16)).shape == (2, 7)
    with pytest.raises(ConfigError, match="did you mean 'resnet18'"):
        load_config(None, ["model.name=torchvision:resnet19"])
    with pytest.raises(UnknownNameError):
        MODELS.get("torchvision:not_a_model")
    with pytest.raises(ConfigError, match="data.image_size"):
        build_model(load_config(None, ["model.name=torchvision:vit_b_16"]).model, (3, 8, 8), 10, seed=0)


def test_local_weights_load_by_name_and_shape(tmp_path):
    source = Net(3, 1000)  # e.g. an ImageNet head
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "w.pt")
    target = Net(3, 10)
    kept = load_weights(target, tmp_path / "w.pt")
    assert kept == ["head.bias", "head.weight"]  # the head's shape differs: it keeps its init
    assert torch.equal(target.conv.weight, source.conv.weight)
    cfg = load_config(None, [f"model.weights={tmp_path / 'w.pt'}"])
    with pytest.raises(ConfigError, match="tensors this model lacks"):
        build_model(cfg.model, (1, 8, 8), 10, seed=0)  # the cnn has other names
    with pytest.raises(ConfigError, match="model.weights"):
        load_config(None, [f"model.weights={tmp_path / 'missing.pt'}"])
    (tmp_path / "code.pt").write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match="not a loadable state dict"):
        load_weights(Net(3, 10), tmp_path / "code.pt")


def test_tensors_arrays_and_datasets_are_materialized_as_uint8():
    x = torch.rand(20, 3, 6, 6)
    data = from_tensors(x, torch.arange(20) % 4)
    assert data.train_x.dtype == torch.uint8 and data.train_x.shape == (20, 3, 6, 6) and data.num_classes == 4
    assert torch.equal(data.train_x, x.mul(255).round().to(torch.uint8))
    hwc = np.zeros((10, 6, 6, 3), dtype=np.uint8)
    assert as_user_data((hwc, np.arange(10) % 2)).train_x.shape == (10, 3, 6, 6)  # numpy: N, H, W, C
    gray = from_dataset([(torch.zeros(6, 6), i % 3) for i in range(9)])
    assert gray.train_x.shape == (9, 1, 6, 6) and gray.num_classes == 3


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([(torch.full((3, 4, 4), -1.0), 0)], "drop transforms.Normalize"),
        ([(torch.zeros(3, 4, 4), 0), (torch.zeros(3, 5, 5), 1)], "transforms.Resize"),
        ([(torch.zeros(3, 4, 4), 0.5)], "integer class indices"),
        ([(torch.zeros(3, 4, 4), {"boxes": []})], "integer class indices"),
        ([torch.zeros(3, 4, 4)], "not an \\(image, label\\) pair"),
        ([], "empty"),
    ],
)
def test_what_cannot_be_stored_is_a_clear_error(items, message):
    with pytest.raises(DatasetFormatError, match=message):
        from_dataset(items)


def test_run_data_argument_and_test_split(tmp_path):
    x, y = torch.rand(100, 1, 8, 8), torch.arange(100) % 2
    result = fedforge.run(
        data=(x, y, x[:20], y[:20]),
        train={"rounds": 1},
        quiet=True,
        tracking={"runs_dir": str(tmp_path)},
        **{"data.num_clients": 2},
    )
    assert result.config.data.name == "custom"
    with pytest.raises(DatasetFormatError, match="give both test_x and test_y"):
        from_tensors(x, y, x[:20])
    with pytest.raises(ConfigError, match="not a built model"):
        fedforge.run(model=Net(1, 2))


def test_imports_and_entry_points(tmp_path, monkeypatch):
    plugin = tmp_path / "unit_plugin_mod.py"
    plugin.write_text(
        "import fedforge\n@fedforge.register_dataset('unit_rand')\ndef unit_rand():\n"
        "    import torch\n    return torch.rand(50, 1, 8, 8), torch.arange(50) % 2\n"
    )
    try:
        cfg = load_config(None, {"imports": [str(plugin)], "data": {"name": "unit_rand"}})
        assert cfg.imports == [str(plugin.resolve())]
        with pytest.raises(ConfigError, match="cannot import 'no_such_module_xyz'"):
            load_config(None, {"imports": ["no_such_module_xyz"]})
    finally:
        fedforge.DATASETS.remove("unit_rand")

    # an installed package's entry point, found by name without any import
    package = tmp_path / "ep"
    (package / "unit_ep_pkg").mkdir(parents=True)
    (package / "unit_ep_pkg" / "__init__.py").write_text(
        textwrap.dedent(
            """
            import fedforge
            from torch import nn

            @fedforge.register_model("unit_ep_net")
            def unit_ep_net(num_classes):
                '''A linear model from an entry point.'''
                return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))
            """
        )
    )
    info = package / "unit_ep_pkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: unit-ep-pkg\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[fedforge.plugins]\nunit = unit_ep_pkg\n")
    monkeypatch.syspath_prepend(str(package))
    from fedforge.plugins import load_entry_points

    load_entry_points.cache_clear()
    try:
        assert load_config(None, ["model.name=unit_ep_net"]).model.name == "unit_ep_net"
    finally:
        MODELS.remove("unit_ep_net")
        load_entry_points.cache_clear()
        sys.modules.pop("unit_ep_pkg", None)
