"""The building blocks of EfficientNet, one small module each (lessons 02 and 03).

Read top to bottom:

1. ``ConvBNAct``: convolution, batch norm, activation: the unit everything is made of.
2. ``DepthwiseSeparableConv``: a kxk depthwise convolution (one filter per channel) then a
   1x1 pointwise convolution (mixing channels): MobileNetV1's replacement for a full conv.
3. ``SqueezeExcitation``: a tiny gate that rescales each channel from a global summary.
4. ``StochasticDepth``: during training, skip a residual branch for some samples.
5. ``MBConv``: the inverted residual with a linear bottleneck (MobileNetV2), plus SE:
   1x1 expand -> kxk depthwise -> SE -> 1x1 linear projection, with a skip connection.

The details follow the official TensorFlow code, which torchvision and timm match, so that
weights move between the three unchanged (see ``effnet_lab.model.from_torchvision``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .checks import check_choice, check_int, check_number

# Activation layers by name, so configurations stay plain data.
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "silu": nn.SiLU,  # "swish" in the paper: x * sigmoid(x)
    "relu6": nn.ReLU6,  # EfficientNet-Lite: friendlier to 8-bit quantisation
    "relu": nn.ReLU,
}


def make_activation(name: str | None) -> nn.Module:
    """The activation layer called ``name``; None gives an identity (a *linear* layer)."""
    if name is None:
        return nn.Identity()
    return ACTIVATIONS[check_choice("activation", name, ACTIVATIONS)](inplace=True)


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias: the batch norm's shift replaces it) -> BatchNorm2d -> activation.

    ``padding = (kernel_size - 1) // 2`` keeps the spatial size at stride 1 and halves it at
    stride 2 (for even input sizes), as in torchvision and timm.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        activation: str | None = "silu",
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=(kernel_size - 1) // 2,
            groups=groups,
            bias=False,
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum)
        self.act = make_activation(activation)


class DepthwiseSeparableConv(nn.Sequential):
    """MobileNetV1's block: kxk depthwise conv -> BN -> act, then 1x1 pointwise -> BN -> act.

    Cost (multiply-adds per output pixel): ``k*k*C_in + C_in*C_out`` instead of
    ``k*k*C_in*C_out`` for a standard convolution: roughly ``1/C_out + 1/k^2`` of it.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        activation: str | None = "relu",
    ) -> None:
        super().__init__()
        # groups=in_channels: each input channel gets its own kxk filter, nothing is mixed.
        self.depthwise = ConvBNAct(
            in_channels, in_channels, kernel_size, stride, groups=in_channels, activation=activation
        )
        # A 1x1 convolution mixes the channels, pixel by pixel.
        self.pointwise = ConvBNAct(in_channels, out_channels, 1, activation=activation)


class SqueezeExcitation(nn.Module):
    """Squeeze (global average pool) -> reduce (1x1) -> act -> expand (1x1) -> sigmoid gate.

    The gate multiplies each channel of the input by a number in (0, 1) computed from the
    whole image: cheap global context. Both 1x1 convolutions have biases, as in the
    official code.
    """

    def __init__(self, channels: int, reduced_channels: int, activation: str = "silu") -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced_channels, 1)
        self.act = make_activation(activation)
        self.expand = nn.Conv2d(reduced_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean(dim=(2, 3), keepdim=True)  # squeeze: one number per channel
        scale = self.expand(self.act(self.reduce(scale)))  # excitation
        return x * torch.sigmoid(scale)


class StochasticDepth(nn.Module):
    """Drop a residual branch for a random subset of the batch while training.

    Each sample's branch is kept with probability ``1 - p`` and, when kept, divided by
    ``1 - p`` so its expected value is unchanged; at evaluation time the branch is always
    kept as is. (Huang et al. 2016; the official EfficientNet code calls it drop-connect.)
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = check_number("stochastic depth probability", p, minimum=0.0)
        if self.p >= 1.0:
            raise ValueError(f"stochastic depth probability must be below 1, got {self.p}")

    def forward(self, branch: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return branch
        keep = 1.0 - self.p
        # One coin flip per sample, broadcast over channels, height and width. Scale the
        # small mask, not the branch: one pass over the big tensor instead of two.
        mask = torch.empty(branch.shape[0], 1, 1, 1, device=branch.device, dtype=branch.dtype)
        mask.bernoulli_(keep).div_(keep)
        return branch * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"


class MBConv(nn.Module):
    """Mobile inverted bottleneck: 1x1 expand -> kxk depthwise -> SE -> 1x1 linear project.

    - The expansion is skipped when ``expand_ratio == 1`` (EfficientNet's MBConv1).
    - The projection has *no* activation: the "linear bottleneck" (lesson 03 shows why).
    - Squeeze-and-excitation acts on the expanded tensor but its width is computed from the
      block's *input* channels: ``max(1, int(in_channels * se_ratio))``.
    - The skip connection exists only when stride is 1 and in and out channels match; only
      then can stochastic depth drop the branch.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        expand_ratio: float = 6,
        se_ratio: float = 0.25,
        drop_path_rate: float = 0.0,
        activation: str = "silu",
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        in_channels = check_int("in_channels", in_channels, minimum=1)
        out_channels = check_int("out_channels", out_channels, minimum=1)
        kernel_size = check_int("kernel_size", kernel_size, minimum=1)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd to keep the feature map centred, got {kernel_size}")
        stride = check_int("stride", stride, minimum=1)
        if stride > 2:
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        expand_ratio = check_number("expand_ratio", expand_ratio, minimum=1.0)
        se_ratio = check_number("se_ratio", se_ratio, minimum=0.0)
        norm = dict(bn_eps=bn_eps, bn_momentum=bn_momentum)

        hidden = int(round(in_channels * expand_ratio))
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.use_residual = stride == 1 and in_channels == out_channels

        self.expand = (
            ConvBNAct(in_channels, hidden, 1, activation=activation, **norm)
            if hidden != in_channels
            else nn.Identity()
        )
        self.depthwise = ConvBNAct(
            hidden, hidden, kernel_size, stride, groups=hidden, activation=activation, **norm
        )
        self.se = (
            SqueezeExcitation(hidden, max(1, int(in_channels * se_ratio)), activation)
            if se_ratio > 0
            else nn.Identity()
        )
        self.project = ConvBNAct(hidden, out_channels, 1, activation=None, **norm)  # linear
        self.drop_path = StochasticDepth(drop_path_rate) if self.use_residual else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.depthwise(self.expand(x))))
        if self.use_residual:
            out = self.drop_path(out) + x
        return out
