"""Local SGD on the flat parameter and gradient vectors of a FlatModel.

FedAvg starts a fresh optimizer for every client and round. `torch.optim.SGD` pays for that
each time (param groups, state dicts, dynamo-wrapped setup that imports torch._dynamo on
first use, ~1 s per process) and steps with a loop over tensors. Here a step is three
vector operations, and starting a client allocates nothing but the momentum buffer.
"""

from __future__ import annotations

import torch

from fedforge.engine.weights import FlatModel


class FlatSGD:
    """SGD with momentum and weight decay (no dampening, no Nesterov) over every parameter.

    Element by element it does torch.optim.SGD's arithmetic in the same order (decay added
    to the gradient, buffer = clone on the first step then momentum * buffer + gradient,
    parameter -= lr * buffer), so the weights it produces are identical.
    """

    def __init__(self, flat: FlatModel, lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> None:
        self.params, self.grad = flat.params(), flat.grad
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.buffer: torch.Tensor | None = None

    def step(self) -> None:
        grad = self.grad  # zeroed before every backward pass, so it may be edited in place
        if self.weight_decay != 0:
            grad.add_(self.params, alpha=self.weight_decay)
        if self.momentum != 0:
            if self.buffer is None:
                self.buffer = grad.clone()
            else:
                self.buffer.mul_(self.momentum).add_(grad)
            grad = self.buffer
        self.params.add_(grad, alpha=-self.lr)
