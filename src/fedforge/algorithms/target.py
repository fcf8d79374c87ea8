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
from fedforge.plugins import StrictModel
from fedforge.seeding import SYNTHESIS, derive_seed, torch_generator


class TargetParams(StrictModel):
    kd_weight: float = Field(25.0, ge=0, description="weight of the client's distillation term (default 25)")
    temperature: float = Field(2.0, gt=0, description="client distillation temperature (default 2)")
    synthetic_batch_size: int | None = Field(
        None, ge=1, description="synthetic images per local step (default train.batch_size)"
    )
    synthesis_rounds: int = Field(
        20, ge=1, description="synthetic batches made after each task; set size = rounds x batch (default 20)"
    )
    synthesis_batch_size: int = Field(128, ge=1, description="images per synthetic batch (default 128)")
    generator_steps: int = Field(50, ge=1, description="generator steps per synthetic batch (default 50)")
    warmup: int = Field(5, ge=0, description="batches before the adversarial term and student start (default 5)")
    student_steps: int = Field(50, ge=0, description="student distillation steps per batch after warm-up (default 50)")
    latent_dim: int = Field(256, ge=1, description="generator noise dimension (default 256)")
    generator_width: int = Field(64, ge=1, description="generator channels (default 64)")
    lr_generator: float = Field(1e-3, gt=0, description="generator Adam learning rate (default 1e-3)")
    lr_latent: float = Field(0.01, gt=0, description="latent codes' Adam learning rate (default 0.01)")
    ce_weight: float = Field(0.5, ge=0, description="weight of L_CE in the generator loss (default 0.5)")
    bn_weight: float = Field(10.0, ge=0, description="weight of L_BN, BN-statistics matching (default 10)")
    adv_weight: float = Field(1.0, ge=0, description="weight of L_adv, the boundary term (default 1)")
    student_temperature: float = Field(20.0, gt=0, description="server student's KD temperature (default 20)")
    student_lr: float = Field(0.2, gt=0, description="server student's SGD learning rate (default 0.2)")

    def budget(self) -> SynthesisBudget:
        return SynthesisBudget(
            rounds=self.synthesis_rounds,
            batch_size=self.synthesis_batch_size,
            generator_steps=self.generator_steps,
            warmup=self.warmup,
            student_steps=self.student_steps,
            latent_dim=self.latent_dim,
            generator_width=self.generator_width,
            lr_generator=self.lr_generator,
            lr_latent=self.lr_latent,
            ce_weight=self.ce_weight,
            bn_weight=self.bn_weight,
            adv_weight=self.adv_weight,
            student_temperature=self.student_temperature,
            student_lr=self.student_lr,
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
            self.params.budget(),
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

    def job_extras(self, state: ServerState) -> dict[str, Any]:
        extras = super().job_extras(state)
        if "teacher" in extras:
            extras["synthetic"] = state.extras["synthetic"]
        return extras

    def summary(self, state: ServerState) -> dict[str, Any]:
        return {"synthesis": state.extras.get("synthesis", [])}

    # -- client ------------------------------------------------------------------------------
    def distillation_inputs(
        self, ctx: ClientContext, job: ClientJob, inputs: torch.Tensor, logits: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A random batch of the synthetic set, augmented like real data, and the local model's outputs there."""
        synthetic = job.extras["synthetic"]
        size = self.params.synthetic_batch_size or self.train.batch_size
        idx = torch.randint(len(synthetic), (size,), generator=ctx.generator).to(synthetic.device)
        kd_inputs = ctx.data.transform(synthetic[idx], ctx.generator)
        return kd_inputs, ctx.model(kd_inputs)
