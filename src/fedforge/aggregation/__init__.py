"""How the round's uploads become the new global model: aggregators, server optimizers, attacks."""

from fedforge.aggregation.reducers import AGGREGATORS, Aggregator
from fedforge.aggregation.server_opt import SERVER_OPTIMIZERS, ServerOptimizer

__all__ = ["AGGREGATORS", "SERVER_OPTIMIZERS", "Aggregator", "ServerOptimizer"]
