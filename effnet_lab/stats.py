"""Student's t distribution without scipy: the factor of a confidence interval from a few seeds.

With n paired seeds, the mean difference has a 95% interval of mean +- t * sd / sqrt(n), where
t is the 0.975 quantile of Student's t with n - 1 degrees of freedom: 12.7 for two seeds,
4.30 for three, 2.26 for ten, tending to the normal 1.96. ``t_quantile`` computes it exactly
for whole degrees of freedom, from the closed form of the distribution function.
"""

from __future__ import annotations

import math


def _t_two_sided(t: float, df: int) -> float:
    """P(|T| < t) for Student's t with an integer ``df`` (Abramowitz & Stegun 26.7.3 and 26.7.4)."""
    theta = math.atan(t / math.sqrt(df))
    c2, term, total = math.cos(theta) ** 2, 1.0, 1.0
    if df % 2:  # odd: 2/pi (theta + sin cos (1 + 2/3 cos^2 + 2*4/(3*5) cos^4 + ...))
        for k in range(1, (df - 1) // 2):
            term *= c2 * (2 * k) / (2 * k + 1)
            total += term
        return 2 / math.pi * (theta + (math.sin(theta) * math.cos(theta) * total if df > 1 else 0.0))
    for k in range(1, df // 2):  # even: sin (1 + 1/2 cos^2 + 1*3/(2*4) cos^4 + ...)
        term *= c2 * (2 * k - 1) / (2 * k)
        total += term
    return math.sin(theta) * total


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (exact, by bisection)."""
    if not 0 < p < 1 or int(df) != df or df < 1:
        raise ValueError(f"t_quantile needs 0 < p < 1 and a whole df >= 1, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    low, high = 0.0, 1.0
    while _t_two_sided(high, int(df)) < 2 * p - 1:
        high *= 2
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if _t_two_sided(middle, int(df)) < 2 * p - 1 else (low, middle)
    return (low + high) / 2
