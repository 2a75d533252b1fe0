"""Lesson 06, exercise 5: the parameters of an EfficientNet from its configuration."""


def count_parameters(config):
    def conv_bn(c_in, c_out, k=1, groups=1):  # a convolution without bias, then a batch norm
        return k * k * (c_in // groups) * c_out + 2 * c_out

    total = conv_bn(3, config.stem_out, 3)  # stem: 3x3 convolution on RGB
    c_in = config.stem_out
    for stage in config.scaled_stages():
        for block in range(stage.repeats):
            hidden = round(c_in * stage.expand_ratio)
            if hidden != c_in:  # expansion 1x1 (absent in MBConv1)
                total += conv_bn(c_in, hidden)
            total += conv_bn(hidden, hidden, stage.kernel_size, groups=hidden)  # depthwise
            if stage.se_ratio > 0:  # squeeze-and-excitation: two 1x1 convolutions with biases
                squeezed = max(1, int(c_in * stage.se_ratio))
                total += hidden * squeezed + squeezed + squeezed * hidden + hidden
            total += conv_bn(hidden, stage.channels)  # linear projection
            c_in = stage.channels
    total += conv_bn(c_in, config.head_out)  # head 1x1
    total += config.head_out * config.num_classes + config.num_classes  # classifier, with bias
    return total
