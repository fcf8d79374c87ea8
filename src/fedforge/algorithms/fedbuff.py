"""FedBuff (Nguyen et al., AISTATS 2022): asynchronous federated learning with a buffer.

There are no rounds: `concurrency` clients train at once, each from the global model current when
it started; the server keeps a buffer and, every `buffer_size` arrivals, moves the model by
server_lr * (1/K) sum_i w(tau_i) delta_i, where tau_i is how many server steps happened since
client i started (its staleness) and w(tau) = (1 + tau)^-staleness_exponent (the paper's
1/sqrt(1 + tau) at the default 0.5). Local training is FedAvg's; the loop that starts and
collects clients on the virtual clock is engine/asynchronous.py, and `train.rounds` counts
server steps.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from fedforge.algorithms.base import register
from fedforge.algorithms.fedavg import FedAvg
from fedforge.plugins import StrictModel


@register("fedbuff")
class FedBuff(FedAvg):
    """Buffered asynchronous aggregation with staleness weighting (runs in the asynchronous mode)."""

    asynchronous: ClassVar[bool] = True

    class Params(StrictModel):
        buffer_size: int = Field(5, ge=1, description="client updates per server step, K (default 5)")
        concurrency: int = Field(
            5, ge=1, description="clients training at any time; with buffer_size at most data.num_clients (default 5)"
        )
        server_lr: float = Field(1.0, gt=0, description="server step size on the buffered mean change (default 1)")
        staleness_exponent: float = Field(
            0.5, ge=0, description="w(tau) = (1 + tau)^-exponent; 0 ignores staleness (default 0.5)"
        )

    def staleness_weight(self, staleness: int) -> float:
        return float((1 + staleness) ** -self.params.staleness_exponent)
