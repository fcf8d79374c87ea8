import math

import pytest
import torch

from fedforge.data.transforms import BatchTransform, random_crop
from fedforge.engine.evaluation import EvalMetrics
from fedforge.engine.selection import ClientSelector
from fedforge.engine.validation import UpdateValidator
from fedforge.records import MODEL, ClientResult, UploadSpec
from tests.rounds import result


def test_selection_is_seeded_per_round_and_without_replacement():
    sel = ClientSelector(100, 10, seed=3)
    r0 = sel.sample(0)
    assert len(r0) == len(set(r0)) == 10 and r0 == sorted(r0)
    assert sel.sample(0) == r0 and sel.sample(1) != r0
    assert ClientSelector(100, 10, seed=4).sample(0) != r0
    assert ClientSelector(5, 5, seed=0).sample(7) == [0, 1, 2, 3, 4]


def specs(reference):
    return {MODEL: UploadSpec.of(reference)}


def test_validator_rejects_malformed_updates_with_reasons():
    g = torch.zeros(4)
    v = UpdateValidator(max_update_norm=1.0)
    good = result(0, torch.full((4,), 0.1), 10)
    nan = result(1, torch.tensor([0.0, float("nan"), 0.0, 0.0]), 10)
    shape = result(2, torch.zeros(5), 10)
    dtype = result(3, torch.zeros(4, dtype=torch.float64), 10)
    far = result(4, torch.full((4,), 10.0), 10)
    count = result(5, torch.zeros(4), -3)
    assert v.verdict(good, specs(g)) is None
    reasons = {r.client_id: v.verdict(r, specs(g)).reason for r in [nan, shape, dtype, far, count]}
    assert "NaN" in reasons[1] and "(5,)" in reasons[2] and "float64" in reasons[3]
    assert "max_update_norm" in reasons[4] and "num_samples" in reasons[5]


def test_finiteness_check_is_exact_when_the_fast_sum_overflows():
    v = UpdateValidator()
    huge = result(0, torch.tensor([3e38, 3e38, 0.0]), 1)  # finite, but their float32 sum is inf
    inf = result(1, torch.tensor([1.0, float("inf"), 0.0]), 1)
    assert v.verdict(huge, specs(torch.zeros(3))) is None
    assert "NaN or infinite" in v.verdict(inf, specs(torch.zeros(3))).reason


def test_transform_normalizes_and_augments_with_the_given_generator():
    mean, std = torch.tensor([0.5]), torch.tensor([0.25])
    t = BatchTransform(mean, std)
    x = torch.tensor([[[[0, 255]]]], dtype=torch.uint8)
    assert torch.allclose(t(x), torch.tensor([[[[-2.0, 2.0]]]]))
    aug = BatchTransform(mean, std, augment=True, hflip=True)
    imgs = torch.randint(0, 256, (16, 1, 8, 8), dtype=torch.uint8)
    a = aug(imgs, torch.Generator().manual_seed(1))
    b = aug(imgs, torch.Generator().manual_seed(1))
    assert a.shape == imgs.shape and torch.equal(a, b)
    assert not torch.equal(a, aug(imgs))  # no generator: evaluation, no augmentation


def test_random_crop_is_a_shifted_window_of_the_padded_image():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    out = random_crop(x, 1, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    windows = [padded[..., i : i + 4, j : j + 4] for i in range(3) for j in range(3)]
    assert any(torch.equal(out, w) for w in windows)


def test_worst_ten_percent_and_mean_skip_clients_without_test_data():
    m = EvalMetrics(accuracy=0.9, loss=0.1, client_accuracy=[0.5, float("nan"), 1.0, 0.9] + [0.8] * 8)
    assert math.isclose(m.personalized_mean, (0.5 + 1.0 + 0.9 + 0.8 * 8) / 11)
    assert math.isclose(m.personalized_worst10, (0.5 + 0.8) / 2)  # ceil(10% of 11) = 2 clients


def test_every_named_entry_is_validated():
    specs = {
        MODEL: UploadSpec.of(torch.zeros(3)),
        "fisher": UploadSpec((2,), required=False),
        "share": UploadSpec((2,), max_norm=1.0),
    }
    v = UpdateValidator()

    def verdict(**entries):
        r = result(0, torch.zeros(3), 4, **{"share": torch.tensor([0.6, 0.4]), **entries})
        rejection = v.verdict(r, specs)
        return None if rejection is None else rejection.reason

    assert verdict() is None and verdict(fisher=torch.ones(2)) is None  # optional entries may come or not
    assert "unexpected entries ['control']" in verdict(control=torch.ones(2))
    assert "entry 'fisher' is torch.float32 (3,), expected float32 (2,)" in verdict(fisher=torch.ones(3))
    assert "entry 'fisher' contains NaN" in verdict(fisher=torch.tensor([0.0, float("nan")]))
    assert "entry 'share' has norm 5, over the 1" in verdict(share=torch.tensor([3.0, 4.0]))
    missing = ClientResult(0, {MODEL: torch.zeros(3)}, 4)
    assert "missing entries ['share']" in v.verdict(missing, specs).reason
    claims = ClientResult(0, {MODEL: torch.zeros(3), "share": torch.zeros(2)}, 4, entry_weights={"share": -1.0})
    assert "entry weight 'share'=-1.0 is not a finite weight >= 0" in v.verdict(claims, specs).reason
    capped = UpdateValidator(max_samples=10)
    claims.entry_weights = {"share": 1e6}
    assert "exceeds backend.max_samples=10" in capped.verdict(claims, specs).reason
    assert "not named tensors" in v.verdict(ClientResult(0, torch.zeros(3), 4), specs).reason


def test_a_ctrl_c_during_the_round_bookkeeping_lands_after_it():
    import os
    import signal

    from fedforge.engine.interrupts import deferred_interrupt

    done = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupt():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("logged")
            done.append("checkpointed")  # both halves run before the interrupt is delivered
    assert done == ["logged", "checkpointed"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
