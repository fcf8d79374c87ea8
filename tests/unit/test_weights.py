import pytest
import torch
from torch import nn

from fedforge.engine.optim import FlatSGD
from fedforge.engine.weights import FlatModel, deserialize, payload_bytes, serialize
from fedforge.errors import InvalidUpdate
from fedforge.models.small import cnn


def net():
    torch.manual_seed(0)
    return cnn((1, 8, 8), 10)


def test_flat_vector_holds_params_then_float_buffers():
    model = net()
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    flat = FlatModel(model)
    names = [e.name for e in flat.layout.entries]
    n_params = sum(p.numel() for p in model.parameters())
    assert flat.layout.num_params == n_params
    assert all(e.is_param for e in flat.layout.entries[: len(list(model.parameters()))])
    assert "1.running_mean" in names and "1.num_batches_tracked" not in names
    for key, value in flat.layout.to_state_dict(flat.vector).items():
        assert torch.equal(value, reference[key])


def test_load_is_in_place_and_changes_the_model():
    model = net()
    flat = FlatModel(model)
    x = torch.randn(4, 1, 8, 8)
    model.eval()
    before = model(x)
    flat.load(torch.zeros(flat.layout.size))
    assert all(float(p.detach().abs().sum()) == 0 for p in model.parameters())
    assert not torch.allclose(model(x), before)
    assert model[0].weight.data_ptr() == flat.vector.data_ptr()  # first entry, no copy


def test_gradients_land_in_the_flat_grad_and_running_stats_in_the_vector():
    model = net()
    flat = FlatModel(model)
    model.train()
    model(torch.randn(8, 1, 8, 8)).sum().backward()
    assert float(flat.grad.abs().sum()) > 0
    assert torch.equal(flat.grad[: model[0].weight.numel()].view_as(model[0].weight), model[0].weight.grad)
    offset = next(e.offset for e in flat.layout.entries if e.name == "1.running_mean")
    assert torch.equal(flat.vector[offset : offset + 32], model[1].running_mean)
    assert float(model[1].running_mean.abs().sum()) > 0  # updated in place by the forward
    flat.zero_grad()
    assert float(model[0].weight.grad.abs().sum()) == 0


def test_layout_indices_select_named_tensors():
    flat = FlatModel(net())
    idx = flat.layout.indices(lambda name: name.startswith("1."))
    assert len(idx) == 4 * 32  # BN weight, bias, running mean, running var
    assert len(flat.layout.indices(lambda name: False)) == 0


def test_serialize_roundtrip_and_size_check():
    flat = FlatModel(net())
    blob = serialize(flat.vector)
    assert len(blob) == 4 * flat.layout.size == payload_bytes(flat.vector)
    assert torch.equal(deserialize(blob, flat.layout), flat.vector)
    with pytest.raises(InvalidUpdate, match="expected"):
        deserialize(blob[:-4], flat.layout)


def test_non_float32_models_are_rejected():
    with pytest.raises(TypeError, match="float32"):
        FlatModel(nn.Linear(2, 2).double())


@pytest.mark.parametrize("momentum, weight_decay", [(0.9, 5e-4), (0.0, 0.0), (0.5, 0.0), (0.0, 1e-3)])
def test_flat_sgd_produces_exactly_torch_sgd_weights(momentum, weight_decay):
    def trained(make_optimizer):
        torch.manual_seed(0)
        flat = FlatModel(net())
        optimizer = make_optimizer(flat)
        gen = torch.Generator().manual_seed(1)
        for _ in range(5):
            x = torch.randn(8, 1, 8, 8, generator=gen)
            flat.zero_grad()
            flat.model(x).square().mean().backward()
            optimizer.step()
        return flat.read()

    reference = trained(
        lambda f: torch.optim.SGD(f.model.parameters(), lr=0.1, momentum=momentum, weight_decay=weight_decay)
    )
    flat = trained(lambda f: FlatSGD(f, lr=0.1, momentum=momentum, weight_decay=weight_decay))
    assert torch.equal(flat, reference)


def test_every_tensor_starts_aligned_and_the_gaps_stay_zero():
    model = nn.Sequential(nn.Linear(3, 10), nn.BatchNorm1d(10), nn.Linear(10, 5))  # sizes that are not multiples of 16
    flat = FlatModel(model)
    assert all(e.offset % 16 == 0 for e in flat.layout.entries)
    for entry in flat.layout.entries:
        tensor = dict(model.named_parameters()).get(entry.name)
        if tensor is None:
            owner, _, attr = entry.name.rpartition(".")
            tensor = getattr(model.get_submodule(owner), attr)
        assert tensor.data_ptr() % 64 == 0  # what CUDA kernels need; misaligned buffers faulted on a GPU
    used = torch.zeros(flat.layout.size, dtype=torch.bool)
    for e in flat.layout.entries:
        used[e.offset : e.offset + e.numel] = True
    optimizer = FlatSGD(flat, lr=0.1, momentum=0.9, weight_decay=0.01)
    for _ in range(3):
        flat.zero_grad()
        model(torch.randn(8, 3)).square().mean().backward()
        optimizer.step()
    assert torch.count_nonzero(flat.vector[~used]) == 0
