"""The search space of lesson 01 (decisions, decoding, cost) and the MnasNet reward."""

import math

import pytest
import torch

from effnet_lab import nas
from effnet_lab.model import build
from effnet_lab.nas import Reward, SearchSpace, mnas_reward

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one CPU thread


def test_default_space_size_and_decisions():
    space = SearchSpace()
    assert space.decision_sizes == (2, 3, 3, 2) * 4
    assert space.size == (2 * 3 * 3 * 2) ** 4
    assert [d.name for d in space.decisions()[:4]] == ["kernel", "expand", "layers", "se"]


@pytest.mark.parametrize("seed", range(6))
def test_every_sampled_architecture_builds_and_runs_on_32x32(seed):
    space = SearchSpace(widths=(0.75, 1.0, 1.25))  # with the optional width decision too
    choices = space.sample(torch.Generator().manual_seed(seed))
    model = build(space.decode(choices)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("choices", [[0, 0, 0, 0] * 4, [1, 2, 2, 1] * 4])
def test_the_smallest_and_largest_children_build_and_run(choices):
    model = build(SearchSpace().decode(choices)).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_a_child_trains():
    model = build(SearchSpace().decode([0, 0, 0, 1] * 4))
    model(torch.randn(4, 3, 32, 32)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_decode_follows_the_choices():
    space = SearchSpace()
    choices = [1, 2, 1, 1, 0, 0, 0, 0, 1, 1, 2, 0, 0, 2, 0, 1]
    config = space.decode(choices)
    assert config.stem == "cifar" and config.num_classes == 10
    assert [(s.kernel_size, s.expand_ratio, s.repeats, s.se_ratio > 0) for s in config.stages] == [
        (5, 6, 2, True), (3, 1, 1, False), (5, 3, 3, False), (3, 6, 1, True)]
    assert space.describe(choices) == "k5 e6 x2 se | k3 e1 x1 | k5 e3 x3 | k3 e6 x1 se"
    model = build(config)
    assert [len(stage) for stage in model.stages] == [2, 1, 3, 1]
    se_blocks = [not isinstance(block.se, torch.nn.Identity) for stage in model.stages for block in stage]
    assert se_blocks == [True, True, False, False, False, False, True]


def test_width_decision_scales_the_stage_channels():
    space = SearchSpace(widths=(0.75, 1.0, 1.25))
    assert len(space.decisions()) == 20
    narrow = space.decode([0, 0, 0, 0, 0] * 4)
    wide = space.decode([0, 0, 0, 0, 2] * 4)
    # 0.75x and 1.25x of (16, 24, 40, 80), rounded as the core rounds widths: to a multiple of 8,
    # never more than 10% below (24 x 0.75 = 18 -> 16 is too far below -> 24).
    assert [s.channels for s in narrow.stages] == [16, 24, 32, 64]
    assert [s.channels for s in wide.stages] == [24, 32, 48, 104]


def test_measure_uses_the_core_counters():
    from effnet_lab.profile import count_macs, count_params

    config = SearchSpace().decode([1, 1, 1, 1] * 4)
    model = build(config)
    assert nas.measure(config) == (count_macs(model, 32), count_params(model))


# --- the reward ----------------------------------------------------------------------


@pytest.mark.parametrize("accuracy, macs, target, w", [
    (0.8, 20e6, 10e6, -0.07), (0.8, 5e6, 10e6, -0.07), (0.9, 400e6, 400e6, -0.07),
    (0.5, 3e6, 25e6, -0.3), (0.7, 1e8, 25e6, 0.0),
])
def test_reward_matches_the_formula(accuracy, macs, target, w):
    expected = accuracy * (macs / target) ** w
    assert Reward(target, w)(accuracy, macs) == pytest.approx(expected, rel=1e-12)
    assert mnas_reward(accuracy, macs, target, w) == pytest.approx(expected, rel=1e-12)


def test_reward_details():
    reward = Reward(10e6, -0.07)
    assert reward(0.8, 10e6) == pytest.approx(0.8)  # at the target the reward is the accuracy
    assert reward(0.8, 20e6) < 0.8 < reward(0.8, 5e6)  # costlier children pay
    # Doubling the MACs must buy 2**0.07 - 1 = 5% relative accuracy to keep the reward.
    assert reward(0.8 * 2 ** 0.07, 20e6) == pytest.approx(reward(0.8, 10e6))
    # MnasNet's hard-ish constraint: free below T, punished above it.
    hard = Reward(10e6, w=0.0, w_above=-1.0)
    assert hard(0.8, 5e6) == pytest.approx(0.8)
    assert hard(0.8, 20e6) == pytest.approx(0.4)


def test_the_target_does_not_change_the_ranking_with_one_exponent():
    a, b = (0.80, 10e6), (0.84, 40e6)
    for target in (1e6, 25e6, 400e6):
        reward = Reward(target, -0.07)
        assert reward(*a) / reward(*b) == pytest.approx(Reward(25e6, -0.07)(*a) / Reward(25e6, -0.07)(*b))


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, match", [
    (dict(base=()), "empty"),
    (dict(kernel_sizes=()), "empty"),
    (dict(expand_ratios=()), "empty"),
    (dict(kernel_sizes=(3,), expand_ratios=(6,), layers=(2,), se=(True,)), "empty"),
    (dict(kernel_sizes=(3, 4)), "odd"),
    (dict(expand_ratios=(0.5, 6)), "expand_ratios"),
    (dict(layers=(0, 1)), "layers"),
    (dict(base=((16, 3),)), "stride"),
    (dict(widths=(0.0, 1.0)), "widths"),
    (dict(kernel_sizes=(3, 3)), "repeated"),
])
def test_bad_search_spaces(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SearchSpace(**kwargs)


@pytest.mark.parametrize("target", [0, -1.0, -25e6, math.nan, math.inf])
def test_target_of_zero_or_below_is_refused(target):
    with pytest.raises(ValueError, match="target_macs"):
        Reward(target_macs=target)


def test_bad_reward_inputs():
    with pytest.raises(TypeError, match="w"):
        Reward(w="-0.07")
    with pytest.raises(ValueError, match="accuracy"):
        Reward()(1.5, 10e6)
    with pytest.raises(ValueError, match="macs"):
        Reward()(0.8, 0)


def test_bad_choices():
    space = SearchSpace()
    with pytest.raises(ValueError, match="16"):
        space.decode([0, 1])
    with pytest.raises(ValueError, match=r"choices\[1\]"):
        space.decode([0, 3] + [0] * 14)
    with pytest.raises(TypeError, match="choices"):
        space.decode("k5e6")


def test_a_childs_macs_from_its_configuration_equal_the_traced_count():
    from effnet_lab.profile import count_macs

    space = nas.SearchSpace()
    generator = torch.Generator().manual_seed(0)
    for _ in range(10):
        config = space.decode(space.sample(generator))
        with torch.device("meta"):
            traced = count_macs(build(config), nas.RESOLUTION)
        assert nas.measure(config)[0] == traced
