"""Data-free synthesis on the server: a generator trained against a frozen model (TARGET Sec. 4.2).

The generator learns to produce images that the frozen global model (the teacher) assigns
to sampled labels with confidence (L_CE), whose feature statistics match the running
statistics stored in the teacher's BatchNorm layers (L_BN), and, after a warm-up, that
lie where a student distilled from the teacher still disagrees with it (the adversarial
boundary term, L_adv). The student tracks the teacher by distillation on what was
synthesized so far. The result is a set of synthetic uint8 images that stand in for the
old classes' data, which no client keeps.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from fedforge.data.transforms import BatchTransform, random_crop, random_hflip
from fedforge.plugins import StrictModel


class Generator(nn.Module):
    """The generator of TARGET (and of the data-free distillation work it builds on): a linear
    layer to a (H/4, W/4) map, two upsampling conv blocks with BatchNorm, sigmoid pixels."""

    def __init__(self, latent_dim: int, width: int, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        channels, height, w = image_shape
        self.image_shape = image_shape
        self.start = (math.ceil(height / 4), math.ceil(w / 4))
        self.project = nn.Linear(latent_dim, 2 * width * self.start[0] * self.start[1])
        self.blocks = nn.Sequential(
            nn.BatchNorm2d(2 * width),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(0.2),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(2 * width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, channels, 3, padding=1),
            nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.project(z).view(len(z), -1, *self.start)
        x = self.blocks(x)
        if x.shape[-2:] != self.image_shape[1:]:  # sizes not divisible by 4 (e.g. 30x30)
            x = F.interpolate(x, size=self.image_shape[1:], mode="bilinear", align_corners=False)
        return x


class BNStatistics:
    """L_BN: for every BatchNorm2d of `model`, the distance between the batch's feature mean and
    variance and the layer's running statistics, summed over layers (DeepInversion's prior)."""

    def __init__(self, model: nn.Module) -> None:
        self.terms: list[torch.Tensor] = []
        self.hooks = [m.register_forward_hook(self._hook) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]

    def _hook(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        x = inputs[0]
        mean = x.mean(dim=(0, 2, 3))
        var = x.permute(1, 0, 2, 3).reshape(x.shape[1], -1).var(dim=1, unbiased=False)
        assert isinstance(module, nn.BatchNorm2d) and module.running_mean is not None
        assert module.running_var is not None
        self.terms.append(torch.norm(module.running_mean - mean, 2) + torch.norm(module.running_var - var, 2))

    def take(self, device: torch.device) -> torch.Tensor:
        """The summed loss of the last forward pass (zero for a model without BatchNorm)."""
        total = torch.stack(self.terms).sum() if self.terms else torch.zeros((), device=device)
        self.terms = []
        return total

    def remove(self) -> None:
        for hook in self.hooks:
            hook.remove()


def kl_divergence(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Per-sample KL(teacher || student) of the softened outputs, scaled by T^2."""
    log_student = F.log_softmax(student / temperature, dim=1)
    soft_teacher = F.softmax(teacher / temperature, dim=1)
    return F.kl_div(log_student, soft_teacher, reduction="none").sum(dim=1) * temperature**2


class SynthesisBudget(StrictModel):
    """The generator step's settings and cost; a method's Params extend it (TARGET's do)."""

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


@dataclass
class SynthesisResult:
    images: torch.Tensor  # uint8 [N, C, H, W], like the dataset's own images
    seconds: float
    agreement: float  # share of the last batch the teacher assigns to its sampled label


class Synthesizer:
    """Trains one generator against a frozen `teacher` and returns the synthetic set."""

    def __init__(
        self,
        teacher: nn.Module,
        student: nn.Module,
        classes: list[int],
        image_shape: tuple[int, int, int],
        transform: BatchTransform,
        budget: SynthesisBudget,
        rng: torch.Generator,
        device: torch.device,
    ) -> None:
        self.teacher, self.student, self.budget = teacher.eval(), student, budget
        self.classes = torch.tensor(classes, device=device)
        self.transform, self.rng, self.device = transform, rng, device
        with torch.random.fork_rng(devices=[]):  # its initial weights come from `rng` too
            torch.default_generator.manual_seed(int(torch.randint(2**62, (1,), generator=rng)))
            self.generator = Generator(budget.latent_dim, budget.generator_width, image_shape).to(device)
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    def augment(self, unit_images: torch.Tensor) -> torch.Tensor:
        """Normalize like the real data and apply the same label-safe augmentation (crop, flip)."""
        x = self.transform.from_unit(unit_images)
        x = random_crop(x, max(1, x.shape[-1] // 8), self.rng)
        return random_hflip(x, self.rng) if self.transform.hflip else x

    def run(self) -> SynthesisResult:
        start = time.perf_counter()
        b = self.budget
        bn = BNStatistics(self.teacher)
        student_opt = torch.optim.SGD(self.student.parameters(), lr=b.student_lr, momentum=0.9, weight_decay=1e-4)
        gen_opt = torch.optim.Adam(self.generator.parameters(), lr=b.lr_generator, betas=(0.5, 0.999))
        pool: list[torch.Tensor] = []
        agreement = float("nan")
        try:
            for index in range(b.synthesis_rounds):
                adversarial = index >= b.warmup
                batch, agreement = self.synthesize_batch(bn, gen_opt, adversarial)
                pool.append(batch)
                if adversarial:
                    self.distil_student(torch.cat(pool), student_opt)
        finally:
            bn.remove()
        return SynthesisResult(torch.cat(pool).cpu(), time.perf_counter() - start, agreement)

    def synthesize_batch(
        self, bn: BNStatistics, gen_opt: torch.optim.Optimizer, adversarial: bool
    ) -> tuple[torch.Tensor, float]:
        """One batch: fresh latent codes and labels, `generator_steps` steps on L_gen; keeps the
        images with the lowest loss (as uint8)."""
        b = self.budget
        z = torch.randn(b.synthesis_batch_size, b.latent_dim, generator=self.rng).to(self.device).requires_grad_(True)
        labels = self.classes[
            torch.randint(len(self.classes), (b.synthesis_batch_size,), generator=self.rng).to(self.device)
        ]
        z_opt = torch.optim.Adam([z], lr=b.lr_latent, betas=(0.5, 0.999))
        best, best_loss, agreement = None, math.inf, 0.0
        self.student.eval()
        for _ in range(b.generator_steps):
            images = self.generator(z)
            inputs = self.augment(images)
            t_out = self.teacher(inputs)
            loss = b.ce_weight * F.cross_entropy(t_out, labels) + b.bn_weight * bn.take(self.device)  # L_CE, L_BN
            if adversarial and b.adv_weight > 0:
                s_out = self.student(inputs)
                # L_adv: push samples to where the student still disagrees, only where both
                # agree on the class (the indicator keeps images on the right side of the boundary).
                same = (s_out.argmax(1) == t_out.argmax(1)).float()
                loss = loss - b.adv_weight * (kl_divergence(s_out, t_out, 1.0) * same).mean()
            if loss.item() < best_loss:
                best_loss, best = loss.item(), images.detach()
                agreement = float((t_out.argmax(1) == labels).float().mean())
            gen_opt.zero_grad()
            z_opt.zero_grad()
            loss.backward()
            gen_opt.step()
            z_opt.step()
        self.student.train()
        assert best is not None
        return (best * 255).round().clamp(0, 255).to(torch.uint8), agreement

    def distil_student(self, pool: torch.Tensor, opt: torch.optim.Optimizer) -> None:
        """The student follows the teacher on the synthetic set (KL at `student_temperature`)."""
        b = self.budget
        for _ in range(b.student_steps):
            idx = torch.randint(len(pool), (min(b.synthesis_batch_size, len(pool)),), generator=self.rng).to(
                self.device
            )
            inputs = self.transform(pool[idx], self.rng)
            with torch.no_grad():
                t_out = self.teacher(inputs)
            loss = kl_divergence(self.student(inputs), t_out, b.student_temperature).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()


def fresh_copy(model: nn.Module, seed: int) -> nn.Module:
    """A re-initialized copy of `model` (same architecture), seeded: the student."""
    student = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        for module in student.modules():
            reset: Any = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
    return student.requires_grad_(True).train()
