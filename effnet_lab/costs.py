"""What a convolution costs, on paper and on the clock (lesson 02).

A standard kxk convolution from ``C_in`` to ``C_out`` channels on an ``H x W`` output has

    params = k^2 * C_in * C_out                 MACs = k^2 * C_in * C_out * H * W

A depthwise separable convolution splits it into a kxk *depthwise* convolution (one filter
per input channel, nothing mixed) and a 1x1 *pointwise* convolution (mixing, pixel by pixel):

    params = k^2 * C_in + C_in * C_out          MACs = (k^2 * C_in + C_in * C_out) * H * W

so both ratios are ``1 / C_out + 1 / k^2``: about 8-9x cheaper for 3x3 kernels. This module
has the formulas, the same layers built from ``torch.nn`` (to measure them with
``effnet_lab.profile`` and check the formulas), the memory traffic that explains why the
depthwise half is slower than its MACs suggest, and the lesson's figures.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from .checks import check_choice, check_int
from .layers import ConvBNAct, DepthwiseSeparableConv
from .plots import plain_log_ticks
from .profile import count_macs, count_params, measure_latency


@dataclass(frozen=True)
class ConvCost:
    """Parameters and multiply-adds of one layer (convolution weights only: no bias, no BN)."""

    params: int
    macs: int


def _shape_args(in_channels, out_channels, kernel_size, resolution, stride) -> tuple[int, ...]:
    return (
        check_int("in_channels", in_channels, minimum=1),
        check_int("out_channels", out_channels, minimum=1),
        check_int("kernel_size", kernel_size, minimum=1),
        check_int("resolution", resolution, minimum=1),
        check_int("stride", stride, minimum=1),
    )


def output_size(resolution: int, kernel_size: int, stride: int = 1) -> int:
    """Side of the output map with the padding ``(k - 1) // 2`` every layer here uses."""
    padding = (kernel_size - 1) // 2
    return (resolution + 2 * padding - kernel_size) // stride + 1


def standard_conv_cost(
    in_channels: int, out_channels: int, kernel_size: int, resolution: int, stride: int = 1
) -> ConvCost:
    """A kxk convolution: every output channel looks at every input channel."""
    c_in, c_out, k, resolution, stride = _shape_args(in_channels, out_channels, kernel_size, resolution, stride)
    params = k * k * c_in * c_out
    return ConvCost(params, params * output_size(resolution, k, stride) ** 2)


def depthwise_conv_cost(channels: int, kernel_size: int, resolution: int, stride: int = 1) -> ConvCost:
    """A kxk depthwise convolution: one kxk filter per channel."""
    c, _, k, resolution, stride = _shape_args(channels, channels, kernel_size, resolution, stride)
    params = k * k * c
    return ConvCost(params, params * output_size(resolution, k, stride) ** 2)


def pointwise_conv_cost(in_channels: int, out_channels: int, resolution: int) -> ConvCost:
    """A 1x1 convolution: a matrix product applied at every pixel."""
    c_in, c_out, _, resolution, _ = _shape_args(in_channels, out_channels, 1, resolution, 1)
    return ConvCost(c_in * c_out, c_in * c_out * resolution**2)


def depthwise_separable_cost(
    in_channels: int, out_channels: int, kernel_size: int, resolution: int, stride: int = 1
) -> ConvCost:
    """Depthwise kxk (carrying the stride) followed by pointwise 1x1."""
    depthwise = depthwise_conv_cost(in_channels, kernel_size, resolution, stride)
    pointwise = pointwise_conv_cost(in_channels, out_channels, output_size(resolution, kernel_size, stride))
    return ConvCost(depthwise.params + pointwise.params, depthwise.macs + pointwise.macs)


def cost_ratio(out_channels: int, kernel_size: int) -> float:
    """Separable cost / standard cost = ``1/C_out + 1/k^2``, for parameters and for MACs alike.

    It depends on neither the input channels nor the resolution: both factor out.
    """
    c_out = check_int("out_channels", out_channels, minimum=1)
    k = check_int("kernel_size", kernel_size, minimum=1)
    return 1 / c_out + 1 / k**2


# --- the same layers, built from torch.nn, to measure ----------------------------------------


def standard_conv(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> nn.Conv2d:
    """A plain kxk convolution without bias (the layer ``standard_conv_cost`` describes)."""
    c_in, c_out, k, _, stride = _shape_args(in_channels, out_channels, kernel_size, 1, stride)
    return nn.Conv2d(c_in, c_out, k, stride, padding=(k - 1) // 2, bias=False)


def separable_conv(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> nn.Sequential:
    """Depthwise kxk then pointwise 1x1, without bias, BN or activation (pure cost)."""
    c_in, c_out, k, _, stride = _shape_args(in_channels, out_channels, kernel_size, 1, stride)
    return nn.Sequential(
        OrderedDict(
            # groups=c_in: c_in independent convolutions of one channel each.
            depthwise=nn.Conv2d(c_in, c_in, k, stride, padding=(k - 1) // 2, groups=c_in, bias=False),
            pointwise=nn.Conv2d(c_in, c_out, 1, bias=False),
        )
    )


def compare_costs(in_channels: int, out_channels: int, kernel_size: int, resolution: int) -> list[dict]:
    """Formula against measurement (``count_params``/``count_macs``) for both layers."""
    layers = {
        "standard": (standard_conv(in_channels, out_channels, kernel_size), standard_conv_cost),
        "depthwise separable": (separable_conv(in_channels, out_channels, kernel_size), depthwise_separable_cost),
    }
    rows = []
    for name, (layer, formula) in layers.items():
        cost = formula(in_channels, out_channels, kernel_size, resolution)
        rows.append(
            {
                "layer": name,
                "params (formula)": cost.params,
                "params (measured)": count_params(layer),
                "MACs (formula)": cost.macs,
                "MACs (measured)": count_macs(layer, resolution),
            }
        )
    return rows


# --- memory traffic and time -------------------------------------------------------------------


def conv_bytes(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    resolution: int,
    groups: int = 1,
    batch_size: int = 1,
    bytes_per_element: int = 4,
) -> int:
    """The least memory a convolution must move: read input and weights once, write output once.

    Real kernels move more (caches are small), so this is an optimistic lower bound.
    """
    c_in, c_out, k, resolution, _ = _shape_args(in_channels, out_channels, kernel_size, resolution, 1)
    groups = check_int("groups", groups, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    out = output_size(resolution, k)
    elements = batch_size * c_in * resolution**2 + k * k * (c_in // groups) * c_out + batch_size * c_out * out**2
    return elements * bytes_per_element


def arithmetic_intensity(
    in_channels: int, out_channels: int, kernel_size: int, resolution: int, groups: int = 1, batch_size: int = 1
) -> float:
    """Multiply-adds per byte moved (float32). Low intensity = limited by memory, not arithmetic.

    A depthwise 3x3 conv does 9 MACs per input element it reads and per output it writes:
    about 9 / 8 MAC per byte. A standard 3x3 conv reuses each input C_out times.
    """
    macs_per_image = (
        kernel_size**2 * (in_channels // groups) * out_channels * output_size(resolution, kernel_size) ** 2
    )
    return batch_size * macs_per_image / conv_bytes(
        in_channels, out_channels, kernel_size, resolution, groups, batch_size
    )


def benchmark_convs(
    channels: int = 128,
    kernel_size: int = 3,
    resolution: int = 28,
    batch_size: int = 8,
    device: torch.device | str | None = None,
    repeats: int = 5,
) -> list[dict]:
    """Time a standard conv, its depthwise and pointwise halves, and the two together.

    Returns one row per layer with MACs, bytes moved, arithmetic intensity, the median time
    and the achieved throughput (GMAC/s): the depthwise layer reaches a fraction of the
    others' throughput, which is why fewer MACs do not always mean less time.
    """
    c = check_int("channels", channels, minimum=1)
    k = check_int("kernel_size", kernel_size, minimum=1)
    layers = {
        f"standard {k}x{k}": (standard_conv(c, c, k), [(c, c, k, 1)]),
        f"depthwise {k}x{k}": (separable_conv(c, c, k).depthwise, [(c, c, k, c)]),
        "pointwise 1x1": (separable_conv(c, c, k).pointwise, [(c, c, 1, 1)]),
        "separable (both)": (separable_conv(c, c, k), [(c, c, k, c), (c, c, 1, 1)]),
    }
    rows = []
    for name, (layer, parts) in layers.items():
        macs = count_macs(layer, resolution, batch_size)
        moved = sum(conv_bytes(*part[:3], resolution, part[3], batch_size) for part in parts)
        timing = measure_latency(layer, resolution, batch_size, device, repeats=repeats)
        rows.append(
            {
                "layer": name,
                "MACs (M)": macs / 1e6,
                "MB moved (min)": moved / 1e6,
                "MAC per byte": macs / moved,
                "time (ms)": timing["latency_ms"],
                "GMAC/s": macs / (timing["latency_ms"] / 1000) / 1e9,
                "device": timing["device"],
            }
        )
    return rows


# --- a tiny CIFAR network, with either kind of convolution ------------------------------------

CONV_KINDS = ("standard", "separable")


def tiny_cifar_net(kind: str = "standard", width: int = 32, num_classes: int = 10, kernel_size: int = 3) -> nn.Sequential:
    """A five-layer CNN for 32x32 images whose kxk convs are standard or depthwise separable.

    The stem (3 input channels: separating it saves nothing) and the classifier are the same
    in both, so any difference in size, speed or accuracy comes from the convolutions.
    """
    check_choice("kind", kind, CONV_KINDS)
    w = check_int("width", width, minimum=1)
    num_classes = check_int("num_classes", num_classes, minimum=1)
    k = check_int("kernel_size", kernel_size, minimum=1)

    def conv(c_in: int, c_out: int, stride: int = 1) -> nn.Module:
        if kind == "standard":
            return ConvBNAct(c_in, c_out, k, stride, activation="relu")
        return DepthwiseSeparableConv(c_in, c_out, k, stride, activation="relu")

    return nn.Sequential(
        OrderedDict(
            stem=ConvBNAct(3, w, 3, activation="relu"),  # 32x32
            conv1=conv(w, 2 * w, stride=2),  # 16x16
            conv2=conv(2 * w, 2 * w),
            conv3=conv(2 * w, 4 * w, stride=2),  # 8x8
            conv4=conv(4 * w, 4 * w),
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            classifier=nn.Linear(4 * w, num_classes),
        )
    )


# --- figures ------------------------------------------------------------------------------------


def plot_cost_ratio(
    kernel_sizes: Iterable[int] = (3, 5, 7),
    channels: Iterable[int] = (8, 16, 32, 64, 128, 256, 512, 1024),
):
    """Two panels: the cost ratio against output channels, and the saving against kernel size."""
    import matplotlib.pyplot as plt

    kernel_sizes, channels = list(kernel_sizes), list(channels)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    for k in kernel_sizes:
        (line,) = left.plot(channels, [cost_ratio(c, k) for c in channels], marker="o", label=f"{k}x{k} kernel")
        left.axhline(1 / k**2, color=line.get_color(), linestyle=":", linewidth=1)
    left.set(
        xscale="log",
        yscale="log",
        xlabel="output channels $C_{out}$ (log scale)",
        ylabel="separable / standard cost",
        title="Cost ratio $1/C_{out} + 1/k^2$\n(dotted: the limit $1/k^2$)",
    )
    left.set_xticks(channels, [str(c) for c in channels])
    plain_log_ticks(left.yaxis)
    left.legend()
    left.grid(True, which="both", alpha=0.3)

    sizes = list(range(1, max(kernel_sizes) + 3, 2))
    for c in sorted({channels[0], channels[len(channels) // 2], channels[-1]}):
        right.plot(sizes, [1 / cost_ratio(c, k) for k in sizes], marker="o", label=f"$C_{{out}}$ = {c}")
    right.set(
        xlabel="kernel size k (pixels)",
        ylabel="times fewer params and MACs",
        title="Saving of the separable convolution",
        xticks=sizes,
    )
    right.legend()
    right.grid(True, alpha=0.3)
    return fig


def plot_benchmark(rows: list[dict]):
    """MACs against time for each layer of ``benchmark_convs``, and throughput against intensity."""
    import matplotlib.pyplot as plt

    names = [row["layer"] for row in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    positions = range(len(rows))
    standard = rows[0]
    left.bar([p - 0.2 for p in positions], [r["MACs (M)"] / standard["MACs (M)"] for r in rows], 0.4, label="MACs")
    left.bar([p + 0.2 for p in positions], [r["time (ms)"] / standard["time (ms)"] for r in rows], 0.4, label="time")
    left.set_xticks(list(positions), [name.replace(" ", "\n", 1) for name in names])
    left.set(ylabel=f"relative to the {names[0]} conv", title="Arithmetic versus wall-clock time")
    left.legend()
    left.grid(True, axis="y", alpha=0.3)

    for row in rows[:3]:  # the three single layers; the pair is their sum
        right.scatter(row["MAC per byte"], row["GMAC/s"], s=60)
        right.annotate(row["layer"], (row["MAC per byte"], row["GMAC/s"]), textcoords="offset points", xytext=(6, 4))
    right.set(
        xscale="log",
        yscale="log",
        xlabel="arithmetic intensity (MACs per byte moved, log)",
        ylabel="achieved GMAC/s (log)",
        title="Low intensity = slow per MAC",
    )
    low, high = right.get_xlim()
    right.set_xlim(low / 2, high * 4)  # room for the labels
    low, high = right.get_ylim()
    right.set_ylim(low / 1.5, high * 1.5)
    plain_log_ticks(right.xaxis)
    plain_log_ticks(right.yaxis)
    right.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"{rows[0]['device']}: median of timed forward passes")
    return fig
