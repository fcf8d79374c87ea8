"""TARGET (Zhang, Chen, Zhuang & Lyu, ICCV 2023): federated class-continual learning via
exemplar-free distillation.

After each task the server trains a generator against the frozen global model and makes a
synthetic set for every class seen so far (algorithms/synthesis.py, the paper's L_gen =
L_CE + L_BN + L_adv). In the next task a client minimizes the paper's client objective,
cross-entropy on its new classes plus kd_weight (25) times distillation from the previous
global model at temperature 2 on synthetic images: the same loss as FedLwF, distilled on
synthetic stand-ins for the old classes instead of the new data. No real sample of an
earlier task is kept anywhere.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from pydantic import Field

from fedforge.algorithms.base import ClientContext, ClientJob, ServerState, register
from fedforge.algorithms.fedlwf import FedLwF
from fedforge.algorithms.synthesis import SynthesisBudget, Synthesizer, fresh_copy
from fedforge.data.federated import FederatedDataset
from fedforge.engine.weights import FlatModel
from fedforge.seeding import SYNTHESIS, derive_seed, torch_generator


class TargetParams(SynthesisBudget):
    """The client's distillation settings; the server's synthesis settings come from SynthesisBudget."""

    kd_weight: float = Field(25.0, ge=0, description="weight of the client's distillation term (default 25)")
    temperature: float = Field(2.0, gt=0, description="client distillation temperature (default 2)")
    synthetic_batch_size: int | None = Field(
        None, ge=1, description="synthetic images per local step (default train.batch_size)"
    )


@register("target")
class Target(FedLwF):
    """FedLwF's loss distilled on server-made synthetic images of the old classes."""

    Params = TargetParams

    def init_server(self, flat: FlatModel, data: FederatedDataset) -> ServerState:
        state = super().init_server(flat, data)
        self.server_model = flat.model  # the architecture to copy for the teacher and the student
        self.image_shape, self.transform = data.input_shape, data.transform
        return state

    def __getstate__(self) -> dict[str, Any]:
        """Executors ship the method to workers; the server's network stays behind."""
        return {k: v for k, v in vars(self).items() if k != "server_model"}

    # -- server ------------------------------------------------------------------------------
    def end_task(self, state: ServerState, task: int) -> ServerState:
        state = super().end_task(state, task)
        teacher = FlatModel(copy.deepcopy(self.server_model))
        teacher.load(state.weights)
        # Synthesize where the server's model lives; results gathered over the network sit on the CPU.
        device = teacher.vector.device
        student = fresh_copy(self.server_model, derive_seed(self.seed, SYNTHESIS, task, 1))
        result = Synthesizer(
            teacher.model,
            student,
            self.plan.seen_classes(task),
            self.image_shape,
            self.transform,
            self.params,
            torch_generator(self.seed, SYNTHESIS, task),
            device,
        ).run()
        cost = {
            "task": task,
            "seconds": round(result.seconds, 3),
            "synthetic_images": len(result.images),
            "synthetic_bytes": result.images.numel(),
            "generator_steps": self.params.synthesis_rounds * self.params.generator_steps,
            "teacher_agreement": round(result.agreement, 4),
        }
        log = [*(entry for entry in state.extras.get("synthesis", []) if entry["task"] != task), cost]
        synthetic = result.images.to(state.weights.device)
        return ServerState(state.weights, {**state.extras, "synthetic": synthetic, "synthesis": log})

    def job_entries(self, state: ServerState) -> dict[str, torch.Tensor]:
        entries = super().job_entries(state)
        if "teacher" in entries:
            entries["synthetic"] = state.extras["synthetic"]
        return entries

    def summary(self, state: ServerState) -> dict[str, Any]:
        return {"synthesis": state.extras.get("synthesis", [])}

    # -- client ------------------------------------------------------------------------------
    def distillation_inputs(
        self, ctx: ClientContext, job: ClientJob, inputs: torch.Tensor, logits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A random batch of the synthetic set, augmented like real data, and the local model's outputs there."""
        synthetic = job.payload["synthetic"]
        size = self.params.synthetic_batch_size or self.train.batch_size
        idx = torch.randint(len(synthetic), (size,), generator=ctx.generator).to(synthetic.device)
        kd_inputs = ctx.data.transform(synthetic[idx], ctx.generator)
        return kd_inputs, ctx.model(kd_inputs)
