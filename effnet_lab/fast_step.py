"""A training step captured as a CUDA graph, with an eager fallback.

A small network's training step on a large GPU is bound by kernel launches: Python and
PyTorch take longer to launch the step's hundreds of kernels than the GPU takes to run them.
A CUDA graph records the whole step (forward, loss, backward, optimizer update) once and
replays it with one launch. The recipe is the one of PyTorch's documentation ("CUDA Graphs",
whole-network capture):

1. warm up for a few steps on a side stream (cuDNN picks its algorithms, the optimizer
   creates its state, the allocator settles);
2. capture one step on the same stream, reading from *static* input tensors; the capture
   records the kernels without running them;
3. for every later batch, copy it into the static inputs and replay the graph.

What the graph needs: shapes that never change (drop the last, incomplete batch); no
synchronisation inside the step (no ``.item()``); an optimizer whose step can be captured,
with the learning rate as a tensor on the GPU, so that a schedule changing it in place
reaches the replays (``capturable_optimizer``). Where any of this is missing (no CUDA, or
the capture fails) ``TrainingStep`` says so once and runs the step eagerly.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable

import torch
from torch import nn

from .checks import check_int


def capturable_optimizer(params: Iterable, device: torch.device | str, name: str = "sgd", lr: float = 0.1,
                         momentum: float = 0.9, nesterov: bool = True,
                         weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """SGD (with momentum) or AdamW whose step a CUDA graph can capture.

    On CUDA: the fused implementation (one kernel for the whole update) with the learning
    rate as a tensor on the GPU, which learning-rate schedulers update in place. Elsewhere
    the ordinary optimizer with a plain number.
    """
    on_cuda = torch.device(device).type == "cuda"
    rate = torch.tensor(lr, device=device) if on_cuda else lr
    if name == "sgd":
        return torch.optim.SGD(params, lr=rate, momentum=momentum, nesterov=nesterov and momentum > 0,
                               weight_decay=weight_decay, fused=on_cuda or None)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=rate, weight_decay=weight_decay, fused=on_cuda or None)
    raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {name!r}")


class TrainingStep:
    """``step(images, labels)``: forward, loss, backward and optimizer step, returning the loss.

    With ``cuda_graph=True`` on a CUDA device, the first ``warmup_steps`` calls run eagerly on a
    side stream, the next one captures the step and every call replays it (the returned loss
    tensor is then overwritten by the next call: read it, or clone it, before). ``mode`` says
    which is in use: "cuda graph" or "eager".
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], *, cuda_graph: bool = True,
                 warmup_steps: int = 3, autocast_dtype: torch.dtype | None = None) -> None:
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.device = next(model.parameters()).device
        self.autocast_dtype = autocast_dtype
        self.warmup_steps = check_int("warmup_steps", warmup_steps, minimum=1)
        self.mode, self.steps, self.graph = ("cuda graph" if cuda_graph else "eager"), 0, None
        self.fallback_reason: str | None = None  # why a requested graph is not used
        if cuda_graph and self.device.type != "cuda":
            self._fall_back(f"CUDA graphs need a CUDA device, the model is on {self.device.type}")
        # The side stream of the warm-up and the capture (a graph cannot be captured on the default stream).
        self.stream = torch.cuda.Stream(self.device) if self.mode == "cuda graph" else None

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self.steps += 1
        if self.mode == "eager":
            return self._step(images, labels)
        if self.graph is None and self.steps <= self.warmup_steps:
            return self._on_side_stream(images, labels)
        if self.graph is None:
            try:
                self._capture(images, labels)
            except RuntimeError as error:  # an operation that cannot be captured
                self.graph = None
                self._fall_back(f"capturing the training step failed ({str(error).splitlines()[0]})")
                return self._step(images, labels)
        elif self._baked_learning_rates() != self.captured_lrs:
            raise RuntimeError("the learning rate changed after the step was captured, and the graph still uses the "
                               "old one: make the optimizer with effnet_lab.fast_step.capturable_optimizer")
        self.static_images.copy_(images)
        self.static_labels.copy_(labels)
        self.graph.replay()
        return self.static_loss

    def _step(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        # cache_enabled=False: autocast's cache of cast weights cannot live in a graph.
        with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.bfloat16,
                            enabled=self.autocast_dtype is not None, cache_enabled=False):
            loss = self.loss_fn(self.model(images), labels)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def _on_side_stream(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.stream):
            loss = self._step(images, labels)
        torch.cuda.current_stream(self.device).wait_stream(self.stream)
        return loss

    def _capture(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.static_images, self.static_labels = images.clone(), labels.clone()
        # The gradients are None here, so the captured backward allocates them from the
        # graph's memory and every replay writes them afresh (no zeroing needed).
        self.optimizer.zero_grad(set_to_none=True)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, stream=self.stream):  # the warm-up's stream: its handles are ready
            self.static_loss = self._step(self.static_images, self.static_labels)
        self.captured_lrs = self._baked_learning_rates()

    def _baked_learning_rates(self) -> list[float]:
        # A tensor learning rate is read by every replay; a plain number is baked into the graph.
        return [group["lr"] for group in self.optimizer.param_groups if not isinstance(group["lr"], torch.Tensor)]

    def _fall_back(self, reason: str) -> None:
        self.mode, self.fallback_reason = "eager", reason
        warnings.warn(f"{reason}: running the training step eagerly", stacklevel=3)
