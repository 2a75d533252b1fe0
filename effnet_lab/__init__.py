"""effnet_lab: EfficientNet, built to be read, scaled and trained on CIFAR.

The modules follow the lessons: ``layers`` (the blocks), ``scaling`` (compound scaling),
``model`` (the builder and the B0-B7 family), ``profile`` (parameters, MACs, latency).
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
