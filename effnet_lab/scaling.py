"""Compound scaling (lesson 04): one coefficient phi scales depth, width and resolution together.

The paper (Tan & Le 2019, section 3.3) scales a baseline network by

    depth      d = alpha ** phi
    width      w = beta  ** phi
    resolution r = gamma ** phi      with  alpha * beta**2 * gamma**2 ~ 2,  alpha, beta, gamma >= 1

A convolution's cost grows linearly with depth and with the *square* of width and of
resolution, so the FLOPs grow by ``(alpha * beta**2 * gamma**2) ** phi``, about ``2 ** phi``.
A small grid search at phi = 1 found alpha = 1.2, beta = 1.1, gamma = 1.15.

Multipliers are real numbers; a network needs whole channels and whole layers, hence the
rounding rules below (from the official code, which torchvision and timm follow). The
published B0-B7 are *not* exactly the formula at phi = 0..7: ``formula_vs_official`` shows
by how much.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .checks import check_int, check_number


def round_channels(channels: float, width: float = 1.0, divisor: int = 8) -> int:
    """Scale ``channels`` by ``width`` and round to a multiple of ``divisor``.

    Rounds to the *nearest* multiple (at least ``divisor``), then adds one more ``divisor``
    if that fell more than 10% below the exact value, so that rounding never removes much
    capacity. Multiples of 8 suit the hardware's vector units.
    """
    width = check_number("width", width, exclusive_minimum=0.0)
    divisor = check_int("divisor", divisor, minimum=1)
    exact = check_number("channels", channels, exclusive_minimum=0.0) * width
    rounded = max(divisor, int(exact + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * exact:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, depth: float = 1.0) -> int:
    """Scale a stage's number of layers by ``depth``, rounding *up* (a stage never vanishes)."""
    depth = check_number("depth", depth, exclusive_minimum=0.0)
    repeats = check_int("repeats", repeats, minimum=1)
    return int(math.ceil(repeats * depth))


def round_resolution(resolution: float, base: int = 224) -> int:
    """Scale a base input size by a resolution multiplier, to the nearest pixel."""
    multiplier = check_number("resolution multiplier", resolution, exclusive_minimum=0.0)
    return max(1, int(round(base * multiplier)))


@dataclass(frozen=True)
class CompoundScaling:
    """The paper's compound scaling rule with its three constants.

    >>> CompoundScaling().multipliers(1)
    (1.2, 1.1, 1.15)
    """

    alpha: float = 1.2  # depth
    beta: float = 1.1  # width
    gamma: float = 1.15  # resolution

    def __post_init__(self) -> None:
        # Scaling up means growing every dimension: constants below 1 would shrink one.
        for name in ("alpha", "beta", "gamma"):
            object.__setattr__(self, name, check_number(name, getattr(self, name), minimum=1.0))

    @property
    def flops_base(self) -> float:
        """alpha * beta^2 * gamma^2: how much one step of phi multiplies the FLOPs (about 2)."""
        return self.alpha * self.beta**2 * self.gamma**2

    def multipliers(self, phi: float) -> tuple[float, float, float]:
        """(depth, width, resolution) multipliers at compound coefficient ``phi``."""
        phi = check_number("phi", phi)
        return (self.alpha**phi, self.beta**phi, self.gamma**phi)

    def flops_factor(self, phi: float) -> float:
        """How many times the baseline's FLOPs the model at ``phi`` costs (before rounding)."""
        phi = check_number("phi", phi)
        return self.flops_base**phi

    def resolution(self, phi: float, base: int = 224) -> int:
        """The input size at ``phi`` for a baseline trained at ``base`` pixels."""
        return round_resolution(self.multipliers(phi)[2], base)


@dataclass(frozen=True)
class Variant:
    """A published model size: width and depth multipliers, input size and dropout."""

    name: str
    width: float
    depth: float
    resolution: int
    dropout: float


# The official EfficientNet-B0..B7 (tensorflow/tpu efficientnet_builder.py; torchvision and
# timm use the same numbers). Kept as data: the models are built from this table.
OFFICIAL_VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("b0", 1.0, 1.0, 224, 0.2),
        Variant("b1", 1.0, 1.1, 240, 0.2),
        Variant("b2", 1.1, 1.2, 260, 0.3),
        Variant("b3", 1.2, 1.4, 300, 0.3),
        Variant("b4", 1.4, 1.8, 380, 0.4),
        Variant("b5", 1.6, 2.2, 456, 0.4),
        Variant("b6", 1.8, 2.6, 528, 0.5),
        Variant("b7", 2.0, 3.1, 600, 0.5),
    )
}

# EfficientNet-Lite0..4 (tensorflow/tpu efficientnet/lite/efficientnet_lite_builder.py).
LITE_VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("lite0", 1.0, 1.0, 224, 0.2),
        Variant("lite1", 1.0, 1.1, 240, 0.2),
        Variant("lite2", 1.1, 1.2, 260, 0.3),
        Variant("lite3", 1.2, 1.4, 280, 0.3),
        Variant("lite4", 1.4, 1.8, 300, 0.3),
    )
}


def implied_phi(multiplier: float, constant: float) -> float:
    """The phi at which ``constant ** phi`` equals ``multiplier`` (0 when the constant is 1)."""
    if constant == 1.0:
        return 0.0
    return math.log(multiplier) / math.log(constant)


def formula_vs_official(scaling: CompoundScaling | None = None, base_resolution: int = 224) -> list[dict]:
    """Compare each official Bn with the pure formula at phi = n.

    Returns one row per variant with the official and the formula's depth, width and
    resolution, and the phi each official number implies on its own. The implied phis do not
    agree with each other or with n: the published family was tuned by hand around the rule
    (for example B1 keeps width 1.0, and resolutions were picked as round sizes).
    """
    scaling = scaling or CompoundScaling()
    rows = []
    for phi, variant in enumerate(OFFICIAL_VARIANTS.values()):
        depth, width, resolution = scaling.multipliers(phi)
        rows.append(
            {
                "variant": variant.name,
                "phi": phi,
                "depth_official": variant.depth,
                "depth_formula": round(depth, 3),
                "width_official": variant.width,
                "width_formula": round(width, 3),
                "resolution_official": variant.resolution,
                "resolution_formula": round_resolution(resolution, base_resolution),
                "phi_from_depth": round(implied_phi(variant.depth, scaling.alpha), 2),
                "phi_from_width": round(implied_phi(variant.width, scaling.beta), 2),
                "phi_from_resolution": round(
                    implied_phi(variant.resolution / base_resolution, scaling.gamma), 2
                ),
            }
        )
    return rows
