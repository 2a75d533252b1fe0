"""Checkers for the code a student writes: a function or a class, run against effnet_lab.

Each checker calls the student's code on random inputs (a fixed seed, so a run is
repeatable), compares shapes, values (to a tolerance) and parameter counts with what the
package computes, and on the first difference raises ``Wrong`` with one sentence saying
what differs. ``check_code`` prints that sentence, never a traceback::

    check("02.6", SeparableConv)   # effnet_lab.exercises.check sends code ids here

A student's ``raise NotImplementedError`` is reported as "not written yet".
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class Wrong(Exception):
    """What is wrong with the student's code, in one sentence (shown as is)."""


@dataclass(frozen=True)
class CodeExercise:
    id: str  # "02.6": lesson 02, exercise 6
    name: str  # what the student's function or class is called in the lesson
    task: str
    checker: Callable[[object], str]  # raises Wrong, or returns what was checked


CODE_EXERCISES: dict[str, CodeExercise] = {}


def code_exercise(id: str, name: str, task: str):
    def decorate(checker):
        CODE_EXERCISES[id] = CodeExercise(id, name, task, checker)
        return checker

    return decorate


def check_code(exercise_id: str, answer: object, *, quiet: bool = False) -> bool:
    """Run the student's ``answer`` through the checker of ``exercise_id``; print one line."""
    item = CODE_EXERCISES[exercise_id]
    try:
        if not callable(answer):
            raise Wrong(f"pass your {item.name} itself (a function or class), not {type(answer).__name__}")
        checked = item.checker(answer)
    except Wrong as wrong:
        if not quiet:
            print(f"❌ {exercise_id}: not yet: {wrong}.")
        return False
    if not quiet:
        print(f"✅ {exercise_id}: right! {item.name} {checked}.")
    return True


# --- helpers: run the student's code, compare, say what differs -------------------------------


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return text[:150].rstrip(".")


def _run(what: str, function: Callable, *args, **kwargs):
    """Call the student's code; any exception becomes one sentence."""
    try:
        return function(*args, **kwargs)
    except NotImplementedError:
        raise Wrong(f"{what} is not written yet: replace its `raise NotImplementedError(...)` with your code") from None
    except Wrong:
        raise
    except Exception as error:  # the student's bug, told in one sentence
        detail = _first_line(error)
        raise Wrong(f"{what} raised {type(error).__name__}" + (f" ({detail})" if detail else "")) from None


def _same(what: str, got, expected: torch.Tensor, atol: float = 1e-5, reference: str = "effnet_lab's") -> None:
    if not isinstance(got, torch.Tensor):
        raise Wrong(f"{what} returned {type(got).__name__}, not a tensor")
    if got.shape != expected.shape:
        raise Wrong(f"{what} has shape {tuple(got.shape)} where {tuple(expected.shape)} was expected")
    difference = (got.detach().float() - expected.float()).abs().max().item()
    if not difference <= atol:  # also catches NaN
        raise Wrong(f"{what} differs from {reference} by up to {difference:.3g} (tolerance {atol:g})")


def _parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _load_in_order(what: str, reference: nn.Module, mine: nn.Module) -> nn.Module:
    from ..model import copy_weights_in_order

    if not isinstance(mine, nn.Module):
        raise Wrong(f"{what} is a {type(mine).__name__}, not an nn.Module")
    try:
        return copy_weights_in_order(reference, mine)
    except (ValueError, RuntimeError) as error:
        raise Wrong(f"{what} holds other tensors than effnet_lab's, in order ({_first_line(error)})") from None


def _randomise_batch_norms(model: nn.Module, generator: torch.Generator) -> None:
    """Fresh batch norms compute the identity; random statistics make a comparison meaningful."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(0.5 * torch.randn(m.num_features, generator=generator))
            m.running_var.copy_(0.5 + 1.5 * torch.rand(m.num_features, generator=generator))
            m.weight.data.copy_(1 + 0.2 * torch.randn(m.num_features, generator=generator))
            m.bias.data.copy_(0.2 * torch.randn(m.num_features, generator=generator))


# --- lesson 01: the REINFORCE update ------------------------------------------------------------


@code_exercise("01.6", "reinforce_update", "one REINFORCE step of the controller, with a moving-average baseline")
def _check_01_6(reinforce_update) -> str:
    from ..nas import ControllerPolicy, SearchSpace

    space = SearchSpace()
    policy = ControllerPolicy(space, seed=0)  # the package's controller and its Reinforce trainer
    trainer = policy.trainer
    mine = copy.deepcopy(policy.controller)
    optimizer = torch.optim.Adam(mine.parameters(), lr=trainer.lr)
    generator = torch.Generator().manual_seed(1)
    baseline = None
    for step in range(1, 6):
        choices = space.sample(generator)
        reward = float(torch.rand((), generator=generator))
        trainer.step(choices, reward)
        baseline = _run("reinforce_update", reinforce_update, mine, optimizer, choices, reward, baseline,
                        decay=trainer.baseline_decay)
        if not isinstance(baseline, (int, float)) or isinstance(baseline, bool):
            raise Wrong(f"reinforce_update returned {baseline!r} where the new baseline (a number) was expected")
        if not math.isclose(baseline, trainer.baseline, rel_tol=1e-6, abs_tol=1e-9):
            raise Wrong(f"after step {step} your baseline is {baseline:.6f} where nas.Reinforce's is "
                        f"{trainer.baseline:.6f}")
        for (name, theirs), ours in zip(policy.controller.named_parameters(), mine.parameters()):
            difference = (theirs - ours).abs().max().item()
            if not difference <= 1e-5:
                raise Wrong(f"after step {step} the controller's {name} differs from nas.Reinforce's by up to "
                            f"{difference:.3g}: is the loss -(R - b) log P(choices), with b from before the step")
    return "matches nas.Reinforce over five steps (weights and baseline)"


# --- lesson 02: a depthwise separable convolution -----------------------------------------------


@code_exercise("02.6", "SeparableConv", "a k x k depthwise convolution then a 1x1 pointwise one, without bias")
def _check_02_6(SeparableConv) -> str:
    from ..costs import separable_conv

    generator = torch.Generator().manual_seed(0)
    for c_in, c_out, k, stride in [(8, 16, 3, 1), (12, 5, 5, 2), (6, 6, 3, 2)]:
        what = f"SeparableConv({c_in}, {c_out}, kernel_size={k}, stride={stride})"
        mine = _run(what, SeparableConv, c_in, c_out, k, stride)
        reference = separable_conv(c_in, c_out, k, stride)
        if not isinstance(mine, nn.Module):
            raise Wrong(f"{what} is a {type(mine).__name__}, not an nn.Module")
        if _parameters(mine) != _parameters(reference):
            raise Wrong(f"{what} has {_parameters(mine):,} parameters where a separable convolution has "
                        f"{_parameters(reference):,} ({k * k} x {c_in} depthwise + {c_in} x {c_out} pointwise, no bias)")
        _load_in_order(what, reference, mine)
        x = torch.randn(2, c_in, 9, 9, generator=generator)
        with torch.no_grad():
            _same(f"the output of {what}", _run(what, mine, x), reference(x))
    return "has the right parameters and outputs for three shapes"


# --- lesson 03: squeeze-and-excitation, and MBConv's forward pass -------------------------------


@code_exercise("03.6", "squeeze_excitation", "the SE gate: pool, reduce, SiLU, expand, sigmoid, multiply")
def _check_03_6(squeeze_excitation) -> str:
    from ..layers import SqueezeExcitation

    generator = torch.Generator().manual_seed(0)
    for channels, reduced in [(24, 6), (40, 10)]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(channels)
            se = SqueezeExcitation(channels, reduced)
        x = torch.randn(2, channels, 7, 5, generator=generator)
        with torch.no_grad():
            got = _run("squeeze_excitation", squeeze_excitation, x, se.reduce, se.expand)
            _same(f"squeeze_excitation on a {tuple(x.shape)} input", got, se(x))
    return "matches effnet_lab's SqueezeExcitation"


@code_exercise("03.7", "MyMBConv", "MBConv's forward pass: expand, depthwise, SE, linear projection, skip")
def _check_03_7(MyMBConv) -> str:
    from ..layers import MBConv

    generator = torch.Generator().manual_seed(0)
    shapes = [dict(c_in=40, c_out=40, kernel_size=5, stride=1, expand_ratio=6),  # with the skip connection
              dict(c_in=40, c_out=80, kernel_size=3, stride=2, expand_ratio=6)]  # downsampling, no skip
    for shape in shapes:
        what = "MyMBConv({c_in}, {c_out}, {kernel_size}, {stride}, {expand_ratio})".format(**shape)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1)
            reference = MBConv(shape["c_in"], shape["c_out"], shape["kernel_size"], shape["stride"], shape["expand_ratio"])
        _randomise_batch_norms(reference, generator)
        mine = _load_in_order(what, reference, _run(what, MyMBConv, **shape))
        x = torch.randn(2, shape["c_in"], 14, 14, generator=generator)
        with torch.no_grad():
            expected = reference.eval()(x)
            _same(f"the output of {what}", _run(f"{what}.forward", mine.eval(), x), expected)
    return "computes what effnet_lab.MBConv computes, with and without the skip connection"


# --- lesson 04: compound scaling with the official rounding -------------------------------------


@code_exercise("04.6", "scale_b0", "B0's channels, repeats and input size at phi, with the official rounding")
def _check_04_6(scale_b0) -> str:
    from ..model import B0_STAGES
    from ..scaling import CompoundScaling, round_channels, round_repeats

    generator = torch.Generator().manual_seed(0)
    cases = [(0.0, 1.2, 1.1, 1.15), (1.0, 1.2, 1.1, 1.15), (3.0, 1.2, 1.1, 1.15)]
    for _ in range(20):
        phi, alpha, beta, gamma = (float(v) for v in torch.rand(4, generator=generator))
        cases.append((round(7 * phi, 2), round(1 + alpha / 2, 3), round(1 + beta / 2, 3), round(1 + gamma / 2, 3)))
    for phi, alpha, beta, gamma in cases:
        where = f"at phi = {phi:g} (alpha {alpha:g}, beta {beta:g}, gamma {gamma:g})"
        result = _run("scale_b0", scale_b0, phi, alpha, beta, gamma)
        if not (isinstance(result, tuple) and len(result) == 3):
            raise Wrong(f"scale_b0 returned {type(result).__name__} where (channels, repeats, resolution) was expected")
        channels, repeats, resolution = result
        scaling = CompoundScaling(alpha, beta, gamma)
        depth, width, _ = scaling.multipliers(phi)
        expected_channels = [round_channels(stage.channels, width) for stage in B0_STAGES]
        expected_repeats = [round_repeats(stage.repeats, depth) for stage in B0_STAGES]
        for label, got, expected in [("channels", channels, expected_channels), ("repeats", repeats, expected_repeats)]:
            got = list(got) if isinstance(got, (list, tuple)) else got
            if not isinstance(got, list) or len(got) != len(expected):
                raise Wrong(f"{where} your {label} are {got!r}, not a list of {len(expected)} numbers (one per stage)")
            for stage, (mine, official) in enumerate(zip(got, expected), start=1):
                if mine != official:
                    raise Wrong(f"{where} stage {stage} ({B0_STAGES[stage - 1].channels} channels, "
                                f"{B0_STAGES[stage - 1].repeats} repeats in B0) gets {mine} {label} where the "
                                f"official rounding gives {official}")
        if resolution != scaling.resolution(phi, base=224):
            raise Wrong(f"{where} your input size is {resolution!r} px where 224 x gamma^phi rounds to "
                        f"{scaling.resolution(phi, base=224)}")
    return f"agrees with effnet_lab.scaling on {len(cases)} random settings"


# --- lesson 06: the parameter count of a model from its configuration ----------------------------


@code_exercise("06.5", "count_parameters", "the parameters of an EfficientNet from its configuration alone")
def _check_06_5(count_parameters) -> str:
    from ..model import create_model, variant_config
    from ..profile import count_params

    cases = [("b0", 1000), ("b3", 10), ("b7", 100), ("lite0", 1000), ("lite4", 10)]
    for name, classes in cases:
        config = variant_config(name, classes)
        with torch.device("meta"):  # shapes only: counting needs no weights
            expected = count_params(create_model(name, num_classes=classes))
        got = _run("count_parameters", count_parameters, config)
        if isinstance(got, bool) or not isinstance(got, int):
            raise Wrong(f"count_parameters returned {got!r} where a whole number was expected")
        if got != expected:
            raise Wrong(f"for {name.upper()} with {classes} classes you count {got:,} parameters where the built "
                        f"model has {expected:,} ({'too many' if got > expected else 'too few'} by {abs(got - expected):,})")
    return f"counts {len(cases)} models of the family exactly"


# --- lesson 07: one training step of a linear probe ---------------------------------------------


def probe_objective(probe: nn.Linear, features: torch.Tensor, labels: torch.Tensor, weight_decay: float):
    """What ``transfer.fit_linear_probe`` minimises: cross-entropy plus weight_decay * ||W||^2."""
    return F.cross_entropy(probe(features), labels) + weight_decay * probe.weight.square().sum()


@code_exercise("07.6", "probe_step", "one gradient-descent step of a linear probe on cross-entropy + L2")
def _check_07_6(probe_step) -> str:
    generator = torch.Generator().manual_seed(0)
    for step, (lr, weight_decay) in enumerate([(0.5, 1e-3), (0.1, 0.0), (1.0, 1e-2)], start=1):
        features = torch.randn(64, 32, generator=generator)
        labels = torch.randint(0, 10, (64,), generator=generator)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(step)
            reference = nn.Linear(32, 10)
        mine = copy.deepcopy(reference)
        loss = probe_objective(reference, features, labels, weight_decay)
        loss.backward()
        with torch.no_grad():
            for parameter in reference.parameters():
                parameter -= lr * parameter.grad
        got = _run("probe_step", probe_step, mine, features, labels, lr, weight_decay)
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            raise Wrong(f"probe_step returned {got!r} where the loss before the step (a number) was expected")
        if not math.isclose(got, loss.item(), rel_tol=1e-4):
            raise Wrong(f"probe_step's loss is {got:.5f} where cross-entropy + weight_decay x ||W||^2 is "
                        f"{loss.item():.5f} (lr {lr:g}, weight_decay {weight_decay:g})")
        descent = "one step of gradient descent"
        _same(f"the probe's weight after your step (lr {lr:g}, weight_decay {weight_decay:g})", mine.weight,
              reference.weight, reference=descent)
        _same(f"the probe's bias after your step (lr {lr:g})", mine.bias, reference.bias, reference=descent)
    return "takes the same step as plain gradient descent on the probe's objective"
