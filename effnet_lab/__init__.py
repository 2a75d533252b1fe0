"""effnet_lab: EfficientNet, built to be read, scaled and trained on CIFAR.

The modules follow the lessons: ``nas`` (the search that found B0), ``layers`` (the blocks),
``scaling`` (compound scaling), ``model`` (the builder, B0-B7 and Lite0-4), ``profile``
(parameters, MACs, latency), ``data`` and ``train`` (CIFAR and the training engine),
``recipes`` (every training recipe), ``experiments``, ``sweep``, ``results`` and ``plots``
(the scaling experiments), ``pretrained`` and ``transfer``
(ImageNet weights offline). The command line: ``python -m effnet_lab --help``.
Only PyTorch is needed to import it; front-end packages (torchinfo, ipywidgets, seaborn,
timm) are imported where they are used.
"""

from .layers import ConvBNAct, DepthwiseSeparableConv, MBConv, SqueezeExcitation, StochasticDepth
from .model import (
    B0_STAGES,
    EfficientNet,
    EfficientNetConfig,
    StageSpec,
    build,
    copy_weights_in_order,
    create_model,
    efficientnet,
    efficientnet_b0,
    efficientnet_b1,
    efficientnet_b2,
    efficientnet_b3,
    efficientnet_b4,
    efficientnet_b5,
    efficientnet_b6,
    efficientnet_b7,
    from_timm,
    from_torchvision,
    variant_config,
)
from .pretrained import (
    classify,
    efficientnet_lite0,
    efficientnet_lite1,
    efficientnet_lite2,
    efficientnet_lite3,
    efficientnet_lite4,
    imagenet_categories,
)
from .profile import count_flops, count_macs, count_params, measure_latency, summary
from .scaling import (
    LITE_VARIANTS,
    OFFICIAL_VARIANTS,
    CompoundScaling,
    Variant,
    formula_vs_official,
    round_channels,
    round_repeats,
)
from .settings import quick_mode

__version__ = "0.1.0"
