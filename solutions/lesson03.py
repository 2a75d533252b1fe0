"""Lesson 03, exercises 6 and 7: squeeze-and-excitation, and MBConv's forward pass."""

import torch
import torch.nn.functional as F
from torch import nn


def squeeze_excitation(x, reduce, expand):
    squeezed = x.mean(dim=(2, 3), keepdim=True)  # one number per image and channel
    gate = torch.sigmoid(expand(F.silu(reduce(squeezed))))  # in (0, 1)
    return x * gate


class MyMBConv(nn.Module):
    def __init__(self, c_in, c_out, kernel_size, stride, expand_ratio, se_ratio=0.25):
        super().__init__()
        hidden = c_in * expand_ratio
        squeezed = max(1, int(c_in * se_ratio))  # from the block's *input* channels
        # 1. expand: narrow -> wide
        self.expand_conv = nn.Conv2d(c_in, hidden, 1, bias=False)
        self.expand_bn = nn.BatchNorm2d(hidden)
        # 2. depthwise: one k x k filter per channel (groups=hidden)
        self.dw_conv = nn.Conv2d(hidden, hidden, kernel_size, stride, padding=kernel_size // 2,
                                 groups=hidden, bias=False)
        self.dw_bn = nn.BatchNorm2d(hidden)
        # 3. squeeze-and-excitation (its convolutions have biases)
        self.se_reduce = nn.Conv2d(hidden, squeezed, 1)
        self.se_expand = nn.Conv2d(squeezed, hidden, 1)
        # 4. project: wide -> narrow, and no activation after it
        self.project_conv = nn.Conv2d(hidden, c_out, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(c_out)
        self.use_residual = stride == 1 and c_in == c_out

    def forward(self, x):
        h = F.silu(self.expand_bn(self.expand_conv(x)))
        h = F.silu(self.dw_bn(self.dw_conv(h)))
        gate = torch.sigmoid(self.se_expand(F.silu(self.se_reduce(h.mean(dim=(2, 3), keepdim=True)))))
        h = self.project_bn(self.project_conv(h * gate))  # linear bottleneck
        return x + h if self.use_residual else h
