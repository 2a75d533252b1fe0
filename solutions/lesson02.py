"""Lesson 02, exercise 6: a depthwise separable convolution."""

from torch import nn


class SeparableConv(nn.Module):
    def __init__(self, c_in, c_out, kernel_size, stride=1):
        super().__init__()
        # groups=c_in: one k x k filter per input channel, no mixing
        self.depthwise = nn.Conv2d(c_in, c_in, kernel_size, stride, padding=kernel_size // 2,
                                   groups=c_in, bias=False)
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=False)  # mixes the channels

    def forward(self, x):
        return self.pointwise(self.depthwise(x))
