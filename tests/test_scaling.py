"""Compound scaling: the formula, the rounding rules (property tests) and the official table."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from effnet_lab import OFFICIAL_VARIANTS, CompoundScaling, formula_vs_official, round_channels, round_repeats

channels = st.integers(min_value=1, max_value=4096)
multipliers = st.floats(min_value=0.05, max_value=8.0, allow_nan=False)


def test_paper_constants_and_flops_factor():
    scaling = CompoundScaling()
    assert scaling.multipliers(1) == pytest.approx((1.2, 1.1, 1.15))
    assert scaling.flops_base == pytest.approx(1.2 * 1.1**2 * 1.15**2)
    assert scaling.flops_base == pytest.approx(1.92, abs=0.005)
    assert scaling.multipliers(0) == (1.0, 1.0, 1.0)


def test_pure_formula_matches_the_papers_numbers():
    scaling = CompoundScaling()
    depths = [1.20, 1.44, 1.73, 2.07, 2.49, 2.99, 3.58]
    widths = [1.10, 1.21, 1.33, 1.46, 1.61, 1.77, 1.95]
    resolutions = [258, 296, 341, 392, 450, 518, 596]
    for phi, (d, w, r) in enumerate(zip(depths, widths, resolutions), start=1):
        depth, width, _ = scaling.multipliers(phi)
        assert depth == pytest.approx(d, abs=0.006)
        assert width == pytest.approx(w, abs=0.006)
        # The reference rounds 450.5 down and 257.6 up: we round to the nearest pixel.
        assert abs(scaling.resolution(phi) - r) <= 1


@given(phi=st.floats(min_value=-3, max_value=8, allow_nan=False),
       alpha=st.floats(1, 2), beta=st.floats(1, 2), gamma=st.floats(1, 2))
def test_flops_factor_is_depth_times_width_and_resolution_squared(phi, alpha, beta, gamma):
    scaling = CompoundScaling(alpha, beta, gamma)
    d, w, r = scaling.multipliers(phi)
    assert scaling.flops_factor(phi) == pytest.approx(d * w**2 * r**2, rel=1e-9)


@given(phi=st.floats(min_value=0, max_value=7), step=st.floats(min_value=0.01, max_value=2),
       alpha=st.floats(1, 2), beta=st.floats(1, 2), gamma=st.floats(1, 2))
def test_multipliers_never_decrease_with_phi(phi, step, alpha, beta, gamma):
    scaling = CompoundScaling(alpha, beta, gamma)
    low, high = scaling.multipliers(phi), scaling.multipliers(phi + step)
    assert all(h >= l for h, l in zip(high, low))


@given(c=channels, width=multipliers)
def test_round_channels_is_a_multiple_of_8_within_10_percent_below(c, width):
    rounded = round_channels(c, width)
    exact = c * width
    assert rounded % 8 == 0 and rounded >= 8
    assert rounded >= 0.9 * exact  # never more than 10% below the scaled value
    # Never more than one divisor's worth above it (it rounds to the nearest, or the next).
    assert rounded <= max(8, exact + 8)


@given(c=channels, width=multipliers, more=st.floats(min_value=0, max_value=4))
def test_round_channels_is_monotonic_in_width(c, width, more):
    assert round_channels(c, width + more) >= round_channels(c, width)


@given(c=st.integers(min_value=1, max_value=512).map(lambda k: 8 * k))
def test_round_channels_keeps_multiples_of_8_at_width_1(c):
    assert round_channels(c, 1.0) == c


@given(r=st.integers(min_value=1, max_value=20), depth=multipliers, more=st.floats(0, 4))
def test_round_repeats_rounds_up_and_is_monotonic(r, depth, more):
    repeats = round_repeats(r, depth)
    assert repeats == math.ceil(r * depth)
    assert repeats >= 1 and repeats >= r * depth
    assert round_repeats(r, depth + more) >= repeats


def test_round_channels_examples_from_the_official_code():
    assert round_channels(32, 1.1) == 32  # 35.2 -> 32 (within 10%)
    assert round_channels(1280, 1.1) == 1408
    assert round_channels(16, 1.4) == 24  # 22.4 -> 24
    assert round_channels(40, 1.8) == 72
    assert round_channels(24, 0.25) == 8  # never below the divisor
    assert round_channels(100, 0.5) == 48  # 50 -> nearest multiple 48, within 10%
    assert round_channels(20, 2.0 / 8 * 3) == 16  # 15 -> nearest 16


def test_official_table_is_kept_as_data():
    expected = {
        "b0": (1.0, 1.0, 224, 0.2), "b1": (1.0, 1.1, 240, 0.2), "b2": (1.1, 1.2, 260, 0.3),
        "b3": (1.2, 1.4, 300, 0.3), "b4": (1.4, 1.8, 380, 0.4), "b5": (1.6, 2.2, 456, 0.4),
        "b6": (1.8, 2.6, 528, 0.5), "b7": (2.0, 3.1, 600, 0.5),
    }
    got = {name: (v.width, v.depth, v.resolution, v.dropout) for name, v in OFFICIAL_VARIANTS.items()}
    assert got == expected


def test_formula_vs_official_shows_the_departures():
    rows = {row["variant"]: row for row in formula_vs_official()}
    assert rows["b0"]["phi"] == 0 and rows["b0"]["resolution_formula"] == 224
    assert rows["b1"]["width_official"] == 1.0 and rows["b1"]["width_formula"] == pytest.approx(1.1)
    assert rows["b7"]["resolution_formula"] == 596 and rows["b7"]["resolution_official"] == 600
    # B7's official depth 3.1 corresponds to phi of about 6.2, not 7.
    assert rows["b7"]["phi_from_depth"] == pytest.approx(math.log(3.1) / math.log(1.2), abs=0.01)
    assert rows["b1"]["phi_from_width"] == 0.0
