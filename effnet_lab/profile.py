"""How big and how costly is a network? Parameters, multiply-adds, latency, a summary.

Two ways to count multiply-adds (MACs), which agree to the last one (the tests check it):
``count_macs(model, resolution)`` traces a built network, and ``macs_from_config(config,
resolution)`` works the same number out from an ``EfficientNetConfig`` without building
anything (microseconds: the cost matching of lesson 05 tries hundreds of shapes per model).

MACs are counted by PyTorch's own ``torch.utils.flop_counter.FlopCounterMode``, which
reports FLOPs (a multiply and an add are two). The EfficientNet paper's "FLOPs" are
multiply-adds, so ``count_macs`` returns half of PyTorch's figure. Only convolutions and
matrix products are counted; batch norm, activations and the SE gate's multiplication are
cheap in comparison and left out, as in the paper.
"""

from __future__ import annotations

import copy
import statistics
import time
from functools import lru_cache

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .checks import check_int


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (weights and biases; batch-norm running statistics excluded)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _check_resolution(model: nn.Module, resolution: int) -> int:
    resolution = check_int("resolution", resolution, minimum=1)
    minimum = getattr(model, "min_resolution", 1)
    if resolution < minimum:
        raise ValueError(
            f"resolution {resolution} is too small for this model: it downsamples {minimum}x, "
            f"so it needs at least {minimum} pixels"
        )
    return resolution


def _input_channels(model: nn.Module) -> int:
    """Channels the model expects: those of its first convolution (3 for a whole network)."""
    first_conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return first_conv.in_channels if first_conv is not None else 3


def count_flops(model: nn.Module, resolution: int, batch_size: int = 1) -> int:
    """FLOPs of one forward pass as PyTorch counts them (2 per multiply-add).

    Works for a whole network or for a single layer or block (lesson 02 measures both):
    the input gets as many channels as the first convolution expects.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    resolution = _check_resolution(model, resolution)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    # A copy on the meta device: shapes flow through, no arithmetic is done, so counting
    # B7 at 600 px takes milliseconds and no memory.
    meta_model = copy.deepcopy(model).to("meta").eval()
    x = torch.empty(batch_size, _input_channels(model), resolution, resolution, device="meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        meta_model(x)
    return int(counter.get_total_flops())


def count_macs(model: nn.Module, resolution: int, batch_size: int = 1) -> int:
    """Multiply-adds of one forward pass at ``resolution`` x ``resolution`` (the paper's "FLOPs")."""
    return count_flops(model, resolution, batch_size) // 2


def _out_size(size: int, stride: int) -> int:
    # Every convolution here has an odd kernel and padding (k - 1) // 2: ceil(size / stride).
    return (size - 1) // stride + 1


@lru_cache(maxsize=65536)
def macs_from_config(config, resolution: int) -> int:
    """Multiply-adds of ``model.build(config)`` at ``resolution``, from the configuration alone.

    Counted as the paper counts: the convolutions and the classifier; batch norm,
    activations and the SE gate's product left out.
    """
    strides = config.stage_strides()
    size = _out_size(resolution, strides[0])
    channels = config.stem_out
    macs = 3 * 3 * 3 * channels * size**2  # stem: 3x3 convolution from RGB
    for stage in config.scaled_stages():
        for repeat in range(stage.repeats):
            hidden = int(round(channels * stage.expand_ratio))
            if hidden != channels:
                macs += channels * hidden * size**2  # 1x1 expansion
            size = _out_size(size, stage.stride if repeat == 0 else 1)
            macs += stage.kernel_size**2 * hidden * size**2  # depthwise kxk
            if stage.se_ratio > 0:
                macs += 2 * hidden * max(1, int(channels * stage.se_ratio))  # SE: two 1x1 convs on 1x1
            macs += hidden * stage.channels * size**2  # 1x1 projection
            channels = stage.channels
    macs += channels * config.head_out * size**2  # head 1x1
    return macs + config.head_out * config.num_classes  # classifier


def measure_latency(
    model: nn.Module,
    resolution: int,
    batch_size: int = 1,
    device: torch.device | str | None = None,
    warmup: int = 2,
    repeats: int = 5,
) -> dict:
    """Median wall-clock time of an inference forward pass, in milliseconds.

    Latency is what a user waits for, and it does not follow MACs: depthwise convolutions do
    little arithmetic per byte they move, so they are limited by memory bandwidth.
    """
    from .settings import default_device, device_name

    resolution = _check_resolution(model, resolution)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    repeats = check_int("repeats", repeats, minimum=1)
    device = torch.device(device) if device is not None else default_device()
    was_training = model.training
    model = model.to(device).eval()
    x = torch.randn(batch_size, _input_channels(model), resolution, resolution, device=device)
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            model(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1000)
    model.train(was_training)
    median = statistics.median(times)
    return {
        "latency_ms": median,
        "images_per_second": batch_size / (median / 1000),
        "batch_size": batch_size,
        "resolution": resolution,
        "device": device_name(device),
    }


def summary(model: nn.Module, resolution: int = 224, depth: int = 2, **kwargs):
    """A torchinfo summary (layer by layer output shapes, parameters and multiply-adds)."""
    try:
        import torchinfo
    except ImportError as error:  # torchinfo is a front-end extra, not needed to train
        raise ImportError("summary() needs torchinfo: pip install torchinfo") from error
    resolution = _check_resolution(model, resolution)
    kwargs.setdefault("col_names", ("output_size", "num_params", "mult_adds"))
    kwargs.setdefault("row_settings", ("var_names",))
    kwargs.setdefault("verbose", 0)
    return torchinfo.summary(model, input_size=(1, 3, resolution, resolution), depth=depth, **kwargs)
