"""Server optimizers against a hand computation: two rounds with fixed pseudo-gradients.

x0 = (1, 2); round 1 reduces to r1 = x0 - g1, round 2 to r2 = x1 - g2, with g1 = (0.5, -0.5) and
g2 = (0.2, 0.4). Every expected number below is written out per coordinate from the update rules
of Reddi et al. (2021) and Hsu et al. (2019), not computed by the code under test.
"""

import math

import pytest
import torch

from fedforge.aggregation import SERVER_OPTIMIZERS
from fedforge.aggregation.server_opt import FedAdagrad, FedAdam, FedYogi, NoServerOptimizer, ServerMomentum

X0, G1, G2 = [1.0, 2.0], [0.5, -0.5], [0.2, 0.4]


def two_rounds(optimizer, trainable=None):
    x0 = torch.tensor(X0, dtype=torch.float64)
    x1, state = optimizer.step(x0, x0 - torch.tensor(G1, dtype=torch.float64), {}, trainable)
    x2, state = optimizer.step(x1, x1 - torch.tensor(G2, dtype=torch.float64), state, trainable)
    return x1, x2, state


def close(tensor, values):
    return torch.allclose(tensor, torch.tensor(values, dtype=torch.float64), atol=1e-12, rtol=0)


def test_registry():
    assert SERVER_OPTIMIZERS.names() == ["adagrad", "adam", "avgm", "none", "yogi"]


def test_none_returns_the_reduced_tensor_itself():
    x = torch.zeros(3)
    reduced = torch.ones(3)
    new, state = NoServerOptimizer().step(x, reduced, {}, None)
    assert new is reduced and state == {}


def test_server_momentum_by_hand():
    x1, x2, state = two_rounds(ServerMomentum(ServerMomentum.Params(lr=1.0, momentum=0.9)))
    # m1 = g1 = (0.5, -0.5); x1 = x0 - m1 = (0.5, 2.5)
    assert close(x1, [0.5, 2.5])
    # m2 = 0.9 m1 + g2 = (0.65, -0.05); x2 = x1 - m2 = (-0.15, 2.55)
    assert close(state["m"], [0.65, -0.05]) and close(x2, [-0.15, 2.55])
    half = ServerMomentum(ServerMomentum.Params(lr=0.5, momentum=0.0))
    assert close(two_rounds(half)[0], [0.75, 2.25])  # lr 0.5, no momentum: x0 - 0.5 g1


def adaptive(v1, v2, lr=0.1, b1=0.9, tau=0.01):
    """x1, x2 from per-coordinate second moments v1, v2 (the rest of the rule is shared)."""
    x1, x2 = [], []
    for i in range(2):
        m1 = (1 - b1) * G1[i]
        a = X0[i] - lr * m1 / (math.sqrt(v1[i]) + tau)
        m2 = b1 * m1 + (1 - b1) * G2[i]
        x1.append(a)
        x2.append(a - lr * m2 / (math.sqrt(v2[i]) + tau))
    return x1, x2


def test_fedadagrad_by_hand():
    tau = 0.01
    v0 = tau**2
    v1 = [v0 + 0.25, v0 + 0.25]  # v1 = v0 + g1^2
    v2 = [v1[0] + 0.04, v1[1] + 0.16]  # v2 = v1 + g2^2
    x1, x2 = adaptive(v1, v2)
    got1, got2, state = two_rounds(FedAdagrad(FedAdagrad.Params(lr=0.1, beta1=0.9, tau=tau)))
    assert close(got1, x1) and close(got2, x2) and close(state["v"], v2)


def test_fedadam_by_hand():
    tau, b2 = 0.01, 0.99
    v0 = tau**2
    v1 = [b2 * v0 + (1 - b2) * 0.25] * 2
    v2 = [b2 * v1[0] + (1 - b2) * 0.04, b2 * v1[1] + (1 - b2) * 0.16]
    x1, x2 = adaptive(v1, v2)
    got1, got2, state = two_rounds(FedAdam(FedAdam.Params(lr=0.1, beta1=0.9, beta2=b2, tau=tau)))
    assert close(got1, x1) and close(got2, x2) and close(state["v"], v2)
    assert close(state["m"], [0.9 * 0.05 + 0.1 * 0.2, 0.9 * -0.05 + 0.1 * 0.4])


def test_fedyogi_by_hand():
    tau, b2 = 0.01, 0.99
    v0 = tau**2
    # v1 = v0 - (1 - b2) g1^2 sign(v0 - g1^2): v0 < 0.25, so v grows by (1 - b2) 0.25
    v1 = [v0 + (1 - b2) * 0.25] * 2
    # coordinate 0: v1 = 0.0026 < g2^2 = 0.04, grows; coordinate 1: v1 < 0.16, grows
    v2 = [v1[0] + (1 - b2) * 0.04, v1[1] + (1 - b2) * 0.16]
    x1, x2 = adaptive(v1, v2)
    got1, got2, state = two_rounds(FedYogi(FedYogi.Params(lr=0.1, beta1=0.9, beta2=b2, tau=tau)))
    assert close(got1, x1) and close(got2, x2) and close(state["v"], v2)


def test_yogi_shrinks_v_where_it_exceeds_the_squared_gradient():
    yogi = FedYogi(FedYogi.Params(beta2=0.9))
    _, state = yogi.direction(torch.tensor([0.1], dtype=torch.float64), {"v": torch.tensor([1.0], dtype=torch.float64)})
    assert close(state["v"], [1.0 - 0.1 * 0.01])  # sign(1 - 0.01) = +1: v moves down toward g^2


@pytest.mark.parametrize("name", ["avgm", "adam", "yogi", "adagrad"])
def test_buffers_take_the_reduced_value(name):
    entry = SERVER_OPTIMIZERS.get(name)
    optimizer = entry(entry.Params(lr=0.5))  # avgm at lr 1 would land on r1 in its first step anyway
    trainable = torch.tensor([True, False])
    x1, _, _ = two_rounds(optimizer, trainable)
    assert x1[1] == X0[1] - G1[1]  # the buffer position is set to r1, not stepped
    assert x1[0] != X0[0] - G1[0]
