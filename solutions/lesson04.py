"""Lesson 04, exercise 6: compound scaling of B0 with the official rounding."""

import math

from effnet_lab import B0_STAGES


def scale_b0(phi, alpha=1.2, beta=1.1, gamma=1.15):
    depth, width, resolution = alpha**phi, beta**phi, gamma**phi
    channels = []
    for stage in B0_STAGES:
        exact = stage.channels * width
        rounded = max(8, int(exact + 4) // 8 * 8)  # nearest multiple of 8, at least 8
        if rounded < 0.9 * exact:  # never lose more than 10%
            rounded += 8
        channels.append(rounded)
    repeats = [math.ceil(stage.repeats * depth) for stage in B0_STAGES]  # always up
    return channels, repeats, round(224 * resolution)
