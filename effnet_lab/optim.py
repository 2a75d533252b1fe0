"""How the weights move: the optimizer, the learning-rate schedule and the weight average.

- SGD with Nesterov momentum (or AdamW), with weight decay on weight matrices and kernels
  only: decaying batch-norm scales and shifts and biases does not regularise anything.
- The learning rate warms up linearly, then follows a cosine to zero (or Smith's one-cycle),
  updated every step.
- ``EMA``: an exponential moving average of the weights, evaluated instead of them.
- ``choose_precision``: in which precision the step runs. bf16 autocast where the GPU does
  bf16 fast (Ampere and newer); fp16 autocast with a gradient scaler where it does not (a T4,
  Colab's default GPU: fp16's narrow range needs the loss scaled up so that small gradients
  do not round to zero); fp32 on a CPU, or when asked.
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from .recipes import TrainConfig


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    # Weight decay only on weight matrices and kernels: decaying batch-norm scales and shifts
    # and biases (the 1-D parameters) does not reduce capacity, it only adds noise.
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov and config.momentum > 0)
    return torch.optim.AdamW(groups, lr=config.lr)


class WarmupCosine:
    """The learning-rate factor at step t: linear warm-up from ~0 to 1, then a cosine to 0."""

    def __init__(self, warmup_steps: int, total_steps: int) -> None:
        self.warmup_steps, self.total_steps = warmup_steps, total_steps

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def make_schedule(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int):
    total = config.epochs * steps_per_epoch
    warmup = round(config.warmup_epochs * steps_per_epoch)
    if config.schedule == "onecycle":
        # Smith's one-cycle: up to lr over the warm-up (30% of the run if none is given), then
        # annealed far below it; momentum cycles the other way.
        start = warmup / total if warmup else 0.3
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total,
                                                   pct_start=min(max(start, 1 / total), 0.99))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(warmup, total))


class EMA(nn.Module):
    """An exponential moving average of a model's weights and batch-norm statistics.

    After each step: ``average <- d * average + (1 - d) * current``. The decay ramps up,
    ``d = min(decay, (1 + n) / (10 + n))`` after n updates: in a short run a fixed 0.999
    would keep the random initial weights in the average for most of it.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        super().__init__()
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.updates = decay, 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        ours = list(self.module.state_dict().values())
        theirs = list(model.state_dict().values())
        floats = [(a, b) for a, b in zip(ours, theirs) if a.is_floating_point()]
        # One fused kernel per list instead of one per tensor; no reads back to the CPU.
        torch._foreach_lerp_([a for a, _ in floats], [b for _, b in floats], 1.0 - d)
        for a, b in zip(ours, theirs):
            if not a.is_floating_point():  # batch-norm step counters: copied
                a.copy_(b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)

    def get_extra_state(self) -> dict:
        return {"updates": self.updates}

    def set_extra_state(self, state: dict) -> None:
        self.updates = int(state["updates"])


PRECISION_NAMES = {"bf16": "bf16 autocast", "fp16": "fp16 autocast with a gradient scaler", "fp32": "fp32"}


def choose_precision(config: TrainConfig, device: torch.device) -> str:
    """"bf16", "fp16" or "fp32" for a run of ``config`` on ``device`` (a forced choice is kept,
    on any device, so that every path can be tried on a CPU)."""
    if not config.amp or config.precision == "fp32":
        return "fp32"
    if config.precision != "auto":
        return config.precision
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def autocast(device: torch.device, precision: str):
    """The autocast context of ``precision`` (a no-op for fp32)."""
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype, enabled=precision != "fp32")


def take_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler, scheduler) -> None:
    """One update: the gradients of ``loss`` (scaled up for fp16), the optimizer's step (skipped
    by the scaler if the scaled gradients overflowed), and the schedule's next learning rate."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    with warnings.catch_warnings():
        # In fp16 the scaler skips a step whose gradients overflowed (the first ones, while it
        # finds its scale); the schedule moves on all the same, which PyTorch warns about.
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
        scheduler.step()

