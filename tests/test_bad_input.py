"""Bad input gets a clear ValueError or TypeError naming the parameter, never a deep traceback."""

import argparse
import math

import pytest
import torch

import effnet_lab
from effnet_lab import CompoundScaling, count_macs, create_model, efficientnet
from effnet_lab.checks import nonnegative_int, positive_float, positive_int


@pytest.mark.parametrize("phi, error", [(math.nan, ValueError), (math.inf, ValueError),
                                        (-math.inf, ValueError), ("2", TypeError), (None, TypeError)])
def test_phi(phi, error):
    with pytest.raises(error, match="phi"):
        CompoundScaling().multipliers(phi)
    with pytest.raises(error, match="phi"):
        CompoundScaling().flops_factor(phi)


@pytest.mark.parametrize("name", ["alpha", "beta", "gamma"])
@pytest.mark.parametrize("value, error", [(0.9, ValueError), (0, ValueError), (-1.2, ValueError),
                                          (math.nan, ValueError), ("1.2", TypeError)])
def test_scaling_constants_below_1(name, value, error):
    with pytest.raises(error, match=name):
        CompoundScaling(**{name: value})


@pytest.mark.parametrize("name", ["width", "depth"])
@pytest.mark.parametrize("value, error", [(0, ValueError), (-1.0, ValueError), (math.nan, ValueError),
                                          (math.inf, ValueError), ("1.0", TypeError), (None, TypeError),
                                          (True, TypeError)])
def test_width_and_depth(name, value, error):
    with pytest.raises(error, match=name):
        efficientnet(**{name: value})


def test_resolution_too_small_for_the_downsampling():
    model = efficientnet(num_classes=10, stem="cifar")
    with pytest.raises(ValueError, match="resolution"):
        model(torch.randn(1, 3, 4, 4))
    with pytest.raises(ValueError, match="resolution"):
        count_macs(create_model("b0"), 16)
    with pytest.raises(ValueError, match="resolution"):
        count_macs(create_model("b0"), 0)
    with pytest.raises(TypeError, match="resolution"):
        count_macs(create_model("b0"), "224")


def test_wrong_input_shape():
    with pytest.raises(ValueError, match="shape"):
        efficientnet(num_classes=10, stem="cifar")(torch.randn(1, 1, 32, 32))
    with pytest.raises(TypeError, match="input"):
        efficientnet()([[1.0]])


@pytest.mark.parametrize("name", ["b8", "b-1", "resnet50", ""])
def test_unknown_variant(name):
    with pytest.raises(ValueError, match="variant"):
        create_model(name)


def test_variant_name_not_a_string():
    with pytest.raises(TypeError, match="variant"):
        create_model(3)


def test_unknown_stem():
    with pytest.raises(ValueError, match="stem"):
        efficientnet(stem="mnist")


def test_unknown_builder_argument():
    with pytest.raises(TypeError, match="widht"):
        efficientnet(widht=1.2)


def test_from_torchvision_rejects_other_models():
    torchvision = pytest.importorskip("torchvision")
    with pytest.raises(ValueError, match="does not match"):
        effnet_lab.from_torchvision(torchvision.models.mobilenet_v2())
    with pytest.raises(TypeError, match="tv_model"):
        effnet_lab.from_torchvision("efficientnet_b0")


@pytest.mark.parametrize("text, message", [("0", "must be at least 1, got 0"), ("-3", "must be at least 1, got -3"),
                                           ("2.5", "expected a whole number"), ("x", "expected a whole number")])
def test_benchmark_counts_are_checked_by_argparse(text, message, capsys):
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=positive_int)
    assert parser.parse_args(["--steps", "4"]).steps == 4
    with pytest.raises(SystemExit):
        parser.parse_args(["--steps", text])
    assert f"argument --steps: {message}" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["0", "-1", "nan", "inf", "soon"])
def test_benchmark_budgets_must_be_positive_numbers(text, capsys):
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=positive_float)
    parser.add_argument("--warmup", type=nonnegative_int)
    assert parser.parse_args(["--minutes", "0.5", "--warmup", "0"]).minutes == 0.5
    with pytest.raises(SystemExit):
        parser.parse_args(["--minutes", text])
    assert "argument --minutes:" in capsys.readouterr().err
