"""Lesson 02's cost formulas against real layers, the memory-traffic model, the tiny CIFAR nets."""

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from effnet_lab import costs
from effnet_lab.profile import count_macs, count_params

SHAPES = [
    # c_in, c_out, k, resolution, stride
    (3, 16, 3, 32, 1),
    (32, 64, 3, 28, 2),
    (64, 128, 5, 14, 1),
    (24, 40, 7, 15, 2),  # odd size at stride 2: the output is ceil(15 / 2)
]


@pytest.mark.parametrize("c_in, c_out, k, resolution, stride", SHAPES)
def test_formulas_match_the_measured_layers(c_in, c_out, k, resolution, stride):
    standard = costs.standard_conv(c_in, c_out, k, stride)
    separable = costs.separable_conv(c_in, c_out, k, stride)
    expected = costs.standard_conv_cost(c_in, c_out, k, resolution, stride)
    assert (count_params(standard), count_macs(standard, resolution)) == (expected.params, expected.macs)
    expected = costs.depthwise_separable_cost(c_in, c_out, k, resolution, stride)
    assert (count_params(separable), count_macs(separable, resolution)) == (expected.params, expected.macs)
    # ... and the layers really produce the output size the formulas assume.
    out = separable(torch.randn(1, c_in, resolution, resolution))
    assert out.shape == (1, c_out, costs.output_size(resolution, k, stride), costs.output_size(resolution, k, stride))
    assert standard(torch.randn(1, c_in, resolution, resolution)).shape == out.shape


@pytest.mark.parametrize("c_in, c_out, k, resolution, stride", [s for s in SHAPES if s[4] == 1])
def test_cost_ratio_is_one_over_c_out_plus_one_over_k_squared(c_in, c_out, k, resolution, stride):
    standard = costs.standard_conv_cost(c_in, c_out, k, resolution)
    separable = costs.depthwise_separable_cost(c_in, c_out, k, resolution)
    assert separable.params / standard.params == pytest.approx(costs.cost_ratio(c_out, k))
    assert separable.macs / standard.macs == pytest.approx(costs.cost_ratio(c_out, k))
    assert costs.cost_ratio(c_out, k) == pytest.approx(1 / c_out + 1 / k**2)


def test_compare_costs_rows_agree():
    rows = costs.compare_costs(64, 128, 3, 16)
    assert [row["layer"] for row in rows] == ["standard", "depthwise separable"]
    for row in rows:
        assert row["params (formula)"] == row["params (measured)"]
        assert row["MACs (formula)"] == row["MACs (measured)"]
    assert rows[1]["MACs (measured)"] < rows[0]["MACs (measured)"] / 8


def test_bytes_and_arithmetic_intensity():
    c, r = 32, 20
    # Depthwise 3x3: read C*R^2 inputs and 9*C weights, write C*R^2 outputs, 4 bytes each.
    assert costs.conv_bytes(c, c, 3, r, groups=c) == 4 * (2 * c * r * r + 9 * c)
    assert costs.conv_bytes(c, c, 3, r, groups=c, batch_size=2) == 4 * (4 * c * r * r + 9 * c)
    intensity = costs.arithmetic_intensity(c, c, 3, r, groups=c)
    assert intensity == pytest.approx(9 * c * r * r / (4 * (2 * c * r * r + 9 * c)))
    assert costs.arithmetic_intensity(c, c, 3, 2048, groups=c) == pytest.approx(9 / 8, rel=1e-3)
    # The standard conv reuses every input C_out times: far more MACs per byte.
    assert costs.arithmetic_intensity(c, c, 3, r) > 10 * intensity


def test_benchmark_rows_are_consistent():
    rows = costs.benchmark_convs(channels=8, kernel_size=3, resolution=8, batch_size=2, device="cpu", repeats=1)
    by_name = {row["layer"]: row for row in rows}
    assert set(by_name) == {"standard 3x3", "depthwise 3x3", "pointwise 1x1", "separable (both)"}
    pair = by_name["separable (both)"]
    assert pair["MACs (M)"] == pytest.approx(by_name["depthwise 3x3"]["MACs (M)"] + by_name["pointwise 1x1"]["MACs (M)"])
    assert by_name["standard 3x3"]["MACs (M)"] == pytest.approx(2 * 9 * 8 * 8 * 8 * 8 / 1e6)
    assert all(row["time (ms)"] > 0 and row["GMAC/s"] > 0 for row in rows)
    assert by_name["depthwise 3x3"]["MAC per byte"] < by_name["standard 3x3"]["MAC per byte"]


@pytest.mark.parametrize("kind", costs.CONV_KINDS)
def test_tiny_cifar_net_runs(kind):
    net = costs.tiny_cifar_net(kind, width=8)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_tiny_nets_differ_only_in_their_convolutions():
    w = 8
    standard, separable = costs.tiny_cifar_net("standard", w), costs.tiny_cifar_net("separable", w)
    convs = [(w, 2 * w), (2 * w, 2 * w), (2 * w, 4 * w), (4 * w, 4 * w)]
    # Standard: 9*c_in*c_out weights + 2*c_out BN. Separable: 9*c_in + c_in*c_out weights and
    # two BNs (2*c_in + 2*c_out).
    saved = sum(9 * a * b - (9 * a + a * b + 2 * a) for a, b in convs)
    assert count_params(standard) - count_params(separable) == saved


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="kind"):
        costs.tiny_cifar_net("dilated")
    with pytest.raises(ValueError, match="out_channels"):
        costs.cost_ratio(0, 3)
    with pytest.raises(TypeError, match="kernel_size"):
        costs.standard_conv_cost(3, 8, "3", 32)


def test_figures_are_labelled():
    fig = costs.plot_cost_ratio()
    for ax in fig.axes:
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()
    rows = costs.benchmark_convs(channels=8, resolution=8, batch_size=1, device="cpu", repeats=1)
    fig = costs.plot_benchmark(rows)
    assert len(fig.axes) == 2 and all(ax.get_ylabel() and ax.get_title() for ax in fig.axes)
