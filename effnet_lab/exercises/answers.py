"""The lessons' exercises with a number (or a word) for an answer, one section per lesson.

Each answer is *computed* from effnet_lab, never typed in, so the checker and the package
can never disagree. Importing this module registers them (``effnet_lab.exercises`` does).
"""

from __future__ import annotations

import math

from . import exercise

def _shape_only(name: str):
    import torch

    from ..model import create_model

    with torch.device("meta"):  # shapes only: counting needs no weights
        return create_model(name)


# --- lesson 00: set-up and tour ------------------------------------------------------------


@exercise("00.1", "How many MBConv blocks does B7 have?", kind="integer",
          hint="Sum the repeats of model.config.scaled_stages() (B0 has 16).")
def _answer_00_1():
    from ..model import variant_config

    return sum(stage.repeats for stage in variant_config("b7").scaled_stages())


@exercise("00.3", "By what factor do B0's MACs grow when the input side doubles?",
          hint="Count with count_macs at 224 and at 448 and divide; a convolution's cost follows the pixel count.")
def _answer_00_3():
    from ..profile import count_macs

    model = _shape_only("b0")
    return count_macs(model, 448) / count_macs(model, 224)


@exercise("00.4", "How many pixels a side has the last feature map of the ImageNet-stem B0 for a 96x96 image?",
          kind="integer",
          hint="Each stride-2 layer halves the side: multiply the strides of model.config.stage_strides(), "
               "or run b0.features on a 96x96 input and read the last dimension.")
def _answer_00_4():
    import torch

    from ..model import efficientnet_b0

    with torch.no_grad():
        return efficientnet_b0().features(torch.zeros(1, 3, 96, 96)).shape[-1]


# --- lesson 01: neural architecture search --------------------------------------------------


@exercise("01.1", "Reward of a child with 80% accuracy and 20M MACs, for T = 10M and w = -0.07?",
          rel_tol=1e-3, hint="Put the numbers into R = ACC x (MACs/T)^w; the cost factor is a little below 1.")
def _answer_01_1():
    from ..nas import Reward

    return Reward(10e6, -0.07)(0.80, 20e6)


@exercise("01.2", "How many different networks does the default search space hold?", kind="integer",
          hint="Count the options of each decision of one stage, combine them, then combine the stages.")
def _answer_01_2():
    from ..nas import SearchSpace

    return SearchSpace().size


@exercise("01.3", "Which w makes a child with 84% accuracy and 40M MACs score as well as one with 80% "
          "and 10M MACs?", rel_tol=1e-3,
          hint="Write the two rewards, set them equal (T cancels) and take logarithms.")
def _answer_01_3():
    return math.log(0.84 / 0.80) / math.log(10 / 40)


@exercise("01.4", "On the known-answer problem, probability that 100 uniform random samples include a best child?",
          hint="First find the chance that one draw is a best child (every stage needs kernel 5 and expansion 6; "
               "depth and SE are free), then the chance that all 100 independent draws miss.")
def _answer_01_4():
    from ..nas import KnownAnswerEvaluator, SearchSpace

    space, favour = SearchSpace(), KnownAnswerEvaluator().favour
    options = {"kernel": space.kernel_sizes, "expand": space.expand_ratios, "layers": space.layers, "se": space.se}
    per_stage = math.prod(1 / len(options[name]) for name in favour)  # one favoured option per decision
    return 1 - (1 - per_stage ** len(space.base)) ** 100


@exercise("01.5", "With one exponent w, can changing the target T change which child the search prefers?",
          kind="choice", choices=("yes", "no"),
          hint="Write (MACs/T)^w as MACs^w x T^-w: what does T do to every reward?")
def _answer_01_5():
    return "no"


# --- lesson 02: depthwise separable convolutions -------------------------------------------


@exercise("02.1", "Parameters of a standard 3x3 convolution from 64 to 128 channels, without bias?",
          kind="integer", hint="Each of the C_out filters has k x k x C_in weights.")
def _answer_02_1():
    from ..costs import standard_conv_cost

    return standard_conv_cost(64, 128, 3, resolution=1).params


@exercise("02.2", "Cost ratio (separable / standard) of a 5x5 convolution with 256 output channels?",
          hint="The ratio is the same for parameters and MACs: write both costs and divide.")
def _answer_02_2():
    from ..costs import cost_ratio

    return cost_ratio(256, 5)


@exercise("02.3", "Smallest number of output channels for which a separable 3x3 conv costs less than 1/8 "
          "of the standard one?", kind="integer",
          hint="Solve 1/C_out + 1/9 < 1/8 for C_out; mind the strict inequality.")
def _answer_02_3():
    from ..costs import cost_ratio

    return next(c for c in range(1, 10_000) if cost_ratio(c, 3) < 1 / 8)


@exercise("02.4", "Arithmetic intensity (MACs per byte) of a float32 depthwise 3x3 conv on a large feature "
          "map (weights negligible)?",
          hint="Per pixel and channel: how many MACs, and how many bytes read plus written?")
def _answer_02_4():
    from ..costs import arithmetic_intensity

    # A very large map makes the weights negligible: the limit the question asks for.
    return arithmetic_intensity(64, 64, 3, resolution=4096, groups=64)


# --- lesson 03: inverted residuals and linear bottlenecks ----------------------------------


@exercise("03.1", "Parameters of MBConv(40, 40, kernel_size=5, expand_ratio=6, se_ratio=0.25), "
          "batch norms and SE included?", kind="integer",
          hint="Add up expand 1x1, depthwise 5x5, SE (two 1x1 convs with biases), project 1x1, "
               "and 2 parameters per channel for each batch norm.")
def _answer_03_1():
    from ..layers import MBConv
    from ..profile import count_params

    return count_params(MBConv(40, 40, 5, 1, 6, 0.25))


@exercise("03.2", "A 2-D point is embedded in n = 5 dimensions by a Gaussian random T. "
          "Probability that ReLU zeroes all 5 coordinates?", rel_tol=0.05,
          hint="Each coordinate t_i . x is a symmetric random variable, independent of the others.")
def _answer_03_2():
    return 0.5**5


@exercise("03.3", "In B0 while training (drop_path_rate 0.2), how many MBConv blocks per sample are "
          "skipped on average?",
          hint="Only blocks with a skip connection can be dropped; sum their drop probabilities.")
def _answer_03_3():
    from ..layers import MBConv
    from ..model import efficientnet_b0

    blocks = [m for m in efficientnet_b0().modules() if isinstance(m, MBConv) and m.use_residual]
    return sum(block.drop_path.p for block in blocks)


@exercise("03.4", "Parameters of the squeeze-and-excitation module in B0's first 192-channel block "
          "(its input has 112 channels)?", kind="integer",
          hint="SE acts on the expanded tensor (6 x 112 channels) but reduces to int(0.25 x 112); "
               "both 1x1 convs have biases.")
def _answer_03_4():
    from ..model import efficientnet_b0
    from ..profile import count_params

    block = next(m for m in efficientnet_b0().stages[5].modules() if hasattr(m, "se"))
    return count_params(block.se)


# --- lesson 04: compound scaling -----------------------------------------------------------


@exercise("04.1", "alpha * beta^2 * gamma^2 for the paper's alpha = 1.2, beta = 1.1, gamma = 1.15?",
          rel_tol=0.002, hint="CompoundScaling has a property for it, or use a calculator.")
def _answer_04_1():
    from ..scaling import CompoundScaling

    return CompoundScaling().flops_base


@exercise("04.2", "With alpha = 1.2 and beta = 1.1, which gamma makes alpha * beta^2 * gamma^2 exactly 2?",
          rel_tol=0.002, hint="Solve for gamma^2 first, then take the square root.")
def _answer_04_2():
    return math.sqrt(2 / (1.2 * 1.1**2))


@exercise("04.3", "Input resolution at phi = 3 for a 224-pixel baseline (nearest pixel)?", kind="integer",
          hint="r = gamma^phi multiplies the side of the image.")
def _answer_04_3():
    from ..scaling import CompoundScaling

    return CompoundScaling().resolution(3, base=224)


@exercise("04.4", "Channels of B0's 320-channel stage at width 1.4 (B4), after rounding?", kind="integer",
          hint="Round 1.4 x 320 to the nearest multiple of 8, then check the 90% rule.")
def _answer_04_4():
    from ..scaling import round_channels

    return round_channels(320, 1.4)


@exercise("04.5", "How many MBConv blocks has the network at phi = 2 (depth 1.2^2)?", kind="integer",
          hint="Each stage's repeats are multiplied by the depth and rounded *up*.")
def _answer_04_5():
    from ..model import EfficientNetConfig
    from ..scaling import CompoundScaling

    depth, width, _ = CompoundScaling().multipliers(2)
    return sum(stage.repeats for stage in EfficientNetConfig(width=width, depth=depth).scaled_stages())


# --- lesson 05: scaling experiments on CIFAR ------------------------------------------------


def _full_comparison():
    from ..experiments import plan

    return plan("compare", quick=False)


def _full_model(family: str, phi: float):
    return next(run for run in _full_comparison() if run.spec.family == family and run.spec.phi == phi)


@exercise("05.1", "How many training runs does the full-scale comparison make (both seeds)?", kind="integer",
          hint="Count the models (the baseline, then four families at each phi) and multiply by the seeds; "
               "or len(experiments.plan(...)).")
def _answer_05_1():
    return len(_full_comparison())


@exercise("05.2", "At full scale, how many times the baseline's MACs does the compound model at phi = 2 "
          "cost (counted, after rounding)?",
          hint="Divide the model's run.macs by run.baseline.macs, or read the plan's 'MACs factor' column.")
def _answer_05_2():
    run = _full_model("compound", 2.0)
    return run.macs / run.baseline.macs


@exercise("05.3", "What input size (pixels) does the full-scale compound model use at phi = 3?", kind="integer",
          hint="The baseline's resolution times gamma^phi, rounded to a whole pixel.")
def _answer_05_3():
    return _full_model("compound", 3.0).spec.resolution


@exercise("05.4", "How many MBConv blocks has the full-scale depth-only model at phi = 3?", kind="integer",
          hint="Sum the repeats of run.model_config().scaled_stages(); each stage's repeats are rounded up.")
def _answer_05_4():
    return sum(stage.repeats for stage in _full_model("depth", 3.0).model_config().scaled_stages())


@exercise("05.5", "The compound model at phi = 3 must be wider than beta^phi to cost 8x. What is its "
          "effective beta (its width factor to the power 1/phi)?", rel_tol=0.005,
          hint="Width factor = run.spec.width / run.baseline.width; then take its cube root.")
def _answer_05_5():
    run = _full_model("compound", 3.0)
    return (run.spec.width / run.baseline.width) ** (1 / 3)


# --- lesson 06: the family -------------------------------------------------------------------


@exercise("06.1", "How many times more MACs does B7 (600 px) cost than B0 (224 px)?",
          hint="count_macs of each model at its own resolution, then divide.")
def _answer_06_1():
    from ..profile import count_macs

    return count_macs(_shape_only("b7"), 600) / count_macs(_shape_only("b0"), 224)


@exercise("06.2", "What fraction of B0's parameters are in its final linear classifier?",
          hint="The classifier maps 1280 features to 1000 classes, with a bias.")
def _answer_06_2():
    from ..profile import count_params

    model = _shape_only("b0")
    return count_params(model.classifier) / count_params(model)


@exercise("06.3", "By what factor do B0's MACs grow if it is fed B7's 600 px images instead of 224 px?",
          rel_tol=0.02, hint="Same network, bigger image: the cost follows the number of pixels, nearly.")
def _answer_06_3():
    from ..profile import count_macs

    model = _shape_only("b0")
    return count_macs(model, 600) / count_macs(model, 224)


# --- lesson 07: transfer learning ------------------------------------------------------------


@exercise("07.1", "How many numbers does the linear probe learn on CIFAR-10?", kind="integer",
          hint="A linear map from Lite0's pooled features (its head's channels) to 10 classes, with biases.")
def _answer_07_1():
    model = _shape_only("lite0")
    return model.config.head_out * 10 + 10


@exercise("07.2", "What fraction of Lite0's ImageNet parameters is its final classifier?",
          hint="count_params(model.classifier) / count_params(model), on the 1000-class Lite0.")
def _answer_07_2():
    from ..profile import count_params

    model = _shape_only("lite0")
    return count_params(model.classifier) / count_params(model)


@exercise("07.3", "By what factor do Lite0's multiply-adds grow when CIFAR images are upsampled from 32 to 224 px?",
          rel_tol=0.02, hint="count_macs(model, 224) / count_macs(model, 32): close to (224 / 32)^2, not exactly.")
def _answer_07_3():
    from ..profile import count_macs

    model = _shape_only("lite0")
    return count_macs(model, 224) / count_macs(model, 32)
