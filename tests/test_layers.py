"""The building blocks: shapes, the residual rule, squeeze-and-excitation, stochastic depth."""

import pytest
import torch
from torch import nn

from effnet_lab import ConvBNAct, DepthwiseSeparableConv, MBConv, SqueezeExcitation, StochasticDepth
from effnet_lab.profile import count_macs, count_params


def test_conv_bn_act_keeps_size_at_stride_1_and_halves_at_stride_2():
    x = torch.randn(2, 8, 16, 16)
    assert ConvBNAct(8, 12, 3, 1)(x).shape == (2, 12, 16, 16)
    assert ConvBNAct(8, 12, 5, 2)(x).shape == (2, 12, 8, 8)
    layer = ConvBNAct(8, 12, 3, activation=None)
    assert isinstance(layer.act, nn.Identity) and layer.conv.bias is None


def test_depthwise_separable_costs_match_the_formula():
    c_in, c_out, k, size = 32, 64, 3, 8
    block = DepthwiseSeparableConv(c_in, c_out, k)
    assert block.depthwise.conv.groups == c_in
    weights = count_params(block.depthwise.conv) + count_params(block.pointwise.conv)
    assert weights == k * k * c_in + c_in * c_out
    standard = nn.Conv2d(c_in, c_out, k, padding=1, bias=False)
    # Per output pixel: k*k*C_in + C_in*C_out multiply-adds instead of k*k*C_in*C_out.
    macs = count_macs(block, size)
    assert macs == size * size * (k * k * c_in + c_in * c_out)
    assert count_macs(standard, size) == size * size * k * k * c_in * c_out


@pytest.mark.parametrize("in_channels, expand", [(16, 6), (40, 6), (32, 1), (24, 3)])
def test_se_width_is_a_quarter_of_the_block_input_channels(in_channels, expand):
    block = MBConv(in_channels, in_channels, expand_ratio=expand)
    hidden = in_channels * expand
    assert block.se.reduce.in_channels == hidden  # acts on the expanded tensor
    assert block.se.reduce.out_channels == max(1, int(in_channels * 0.25))  # sized from the input
    assert block.se.reduce.bias is not None and block.se.expand.bias is not None


def test_squeeze_excitation_gates_each_channel_between_0_and_1():
    se = SqueezeExcitation(8, 2)
    x = torch.rand(3, 8, 5, 5) + 0.1
    y = se(x)
    ratio = y / x
    # One factor per (sample, channel), constant over space, strictly inside (0, 1).
    assert torch.allclose(ratio, ratio[..., :1, :1].expand_as(ratio), atol=1e-6)
    assert (ratio > 0).all() and (ratio < 1).all()


def test_expansion_is_skipped_when_the_ratio_is_1():
    assert isinstance(MBConv(16, 16, expand_ratio=1).expand, nn.Identity)
    assert isinstance(MBConv(16, 24, expand_ratio=6).expand, ConvBNAct)


def test_projection_is_linear():
    block = MBConv(16, 24, expand_ratio=6)
    assert isinstance(block.project.act, nn.Identity)
    # The output can be negative: no activation after the projection's batch norm.
    out = block.eval()(torch.randn(4, 16, 8, 8))
    assert (out < 0).any()


@pytest.mark.parametrize(
    "in_channels, out_channels, stride, residual",
    [(16, 16, 1, True), (16, 16, 2, False), (16, 24, 1, False), (24, 40, 2, False)],
)
def test_residual_only_when_stride_1_and_channels_match(in_channels, out_channels, stride, residual):
    block = MBConv(in_channels, out_channels, stride=stride, drop_path_rate=0.5)
    assert block.use_residual is residual
    x = torch.randn(2, in_channels, 8, 8)
    out = block(x)
    assert out.shape == (2, out_channels, 8 // stride, 8 // stride)
    if residual:
        # Zero the projection: the block must then return its input exactly (eval mode).
        nn.init.zeros_(block.project.bn.weight)
        block.eval()
        assert torch.equal(block(x), x)


def test_stochastic_depth_drops_whole_samples_in_training_only():
    torch.manual_seed(0)
    layer = StochasticDepth(0.3)
    branch = torch.ones(4000, 2, 3, 3)
    out = layer.train()(branch)
    per_sample = out.flatten(1)
    # Each sample is either all zero or all 1 / 0.7: whole branches are dropped.
    kept = per_sample[:, 0] != 0
    assert torch.allclose(per_sample[kept], torch.full_like(per_sample[kept], 1 / 0.7))
    assert (per_sample[~kept] == 0).all()
    assert abs((~kept).float().mean().item() - 0.3) < 0.03
    assert abs(out.mean().item() - 1.0) < 0.05  # unbiased in expectation
    assert torch.equal(layer.eval()(branch), branch)


def test_stochastic_depth_in_mbconv_changes_training_output_not_eval_output():
    torch.manual_seed(0)
    block = MBConv(16, 16, drop_path_rate=0.5)
    x = torch.randn(64, 16, 4, 4)
    block.eval()
    first, second = block(x), block(x)
    assert torch.equal(first, second)
    block.train()
    outs = [block(x) for _ in range(3)]
    assert not torch.equal(outs[0], outs[1]) or not torch.equal(outs[1], outs[2])


def test_blocks_match_torchvision_stochastic_depth_semantics():
    from torchvision.ops import StochasticDepth as TVStochasticDepth

    x = torch.randn(8, 4, 2, 2)
    torch.manual_seed(1)
    ours = StochasticDepth(0.5).train()(x)
    torch.manual_seed(1)
    theirs = TVStochasticDepth(0.5, "row").train()(x)
    assert torch.allclose(ours, theirs)
