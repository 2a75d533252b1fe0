"""EfficientNet: the B0 baseline as data, and one builder that scales it (lessons 00 and 06).

The whole architecture is the table ``B0_STAGES`` (the paper's Table 1) plus a stem and a
head. ``build(config)`` scales the table's channels by the width multiplier and its layer
counts by the depth multiplier (rounding as in ``effnet_lab.scaling``) and stacks MBConv
blocks. Every published model is a configuration of the same builder:

- ``efficientnet_b0()`` ... ``efficientnet_b7()``: the official width/depth/dropout table;
- ``efficientnet_lite0()`` ... ``efficientnet_lite4()``: no squeeze-and-excitation, ReLU6,
  stem and head kept at 32 and 1280 channels, first and last stages not deepened;
- ``efficientnet(width, depth, stem="cifar")``: a variant for 32x32 CIFAR images.

The cifar stem. B0 halves the image five times (stride 32), which turns a 32x32 CIFAR image
into a 1x1 feature map after stage 7: most layers would see almost no spatial structure.
The cifar stem removes the first two halvings: the stem convolution and the first stage
with stride 2 (the 24-channel stage) use stride 1. The network then downsamples 8 times in
total, so a 32x32 image ends as a 4x4 map, as a 128x128 image does in B0 (the timm author's
advice for CIFAR: reduce the output stride rather than upsample the inputs). Everything
else, and the scaling rules, are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable

import torch
from torch import nn

from .checks import check_choice, check_int, check_number
from .layers import ConvBNAct, MBConv
from .scaling import LITE_VARIANTS, OFFICIAL_VARIANTS, round_channels, round_repeats


@dataclass(frozen=True)
class StageSpec:
    """One row of the paper's Table 1: ``repeats`` MBConv blocks with the same shape.

    Only the first block of a stage uses ``stride`` (and changes the channel count); the
    others keep both, so they get a residual connection.
    """

    expand_ratio: float
    kernel_size: int
    stride: int
    channels: int
    repeats: int
    se_ratio: float = 0.25


# EfficientNet-B0 (Tan & Le 2019, Table 1; strides as in the official block strings).
B0_STAGES: tuple[StageSpec, ...] = (
    #         expand kernel stride channels repeats
    StageSpec(1, 3, 1, 16, 1),  # MBConv1, 112x112 at 224 px input
    StageSpec(6, 3, 2, 24, 2),  # MBConv6, 112 -> 56
    StageSpec(6, 5, 2, 40, 2),  # 56 -> 28
    StageSpec(6, 3, 2, 80, 3),  # 28 -> 14
    StageSpec(6, 5, 1, 112, 3),  # 14
    StageSpec(6, 5, 2, 192, 4),  # 14 -> 7
    StageSpec(6, 3, 1, 320, 1),  # 7
)
B0_STEM_CHANNELS = 32
B0_HEAD_CHANNELS = 1280

STEMS = ("imagenet", "cifar")


@dataclass(frozen=True)
class EfficientNetConfig:
    """Everything needed to build one network: plain data, so it can be hashed and logged."""

    width: float = 1.0
    depth: float = 1.0
    num_classes: int = 1000
    dropout: float = 0.2
    stem: str = "imagenet"
    stages: tuple[StageSpec, ...] = B0_STAGES
    stem_channels: int = B0_STEM_CHANNELS
    head_channels: int = B0_HEAD_CHANNELS
    activation: str = "silu"
    drop_path_rate: float = 0.2  # stochastic depth of the last block; 0 for the first
    scale_stem_and_head: bool = True  # False in EfficientNet-Lite
    unscaled_depth_stages: tuple[int, ...] = ()  # Lite: (0, last): repeats kept as is
    # PyTorch's batch-norm defaults, as torchvision uses for B0-B4. The official code uses
    # eps=1e-3, momentum=0.01 (TF's 0.99), which torchvision keeps for B5-B7; with momentum
    # 0.01 the running statistics lag far behind in the short runs of the lessons.
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1
    resolution: int | None = None  # the input size this configuration is meant for (info only)
    # Start each residual block as the identity: the last batch norm of its branch scales by
    # zero (Goyal et al., 2017, as timm's zero_init_last). A deep network then starts out
    # as shallow as its first blocks and grows into its depth while it trains.
    zero_init_last_bn: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "width", check_number("width", self.width, exclusive_minimum=0.0))
        object.__setattr__(self, "depth", check_number("depth", self.depth, exclusive_minimum=0.0))
        object.__setattr__(self, "num_classes", check_int("num_classes", self.num_classes, minimum=1))
        dropout = check_number("dropout", self.dropout, minimum=0.0)
        if dropout >= 1.0:
            raise ValueError(f"dropout must be below 1, got {dropout}")
        object.__setattr__(self, "dropout", dropout)
        check_choice("stem", self.stem, STEMS)
        rate = check_number("drop_path_rate", self.drop_path_rate, minimum=0.0)
        if rate >= 1.0:
            raise ValueError(f"drop_path_rate must be below 1, got {rate}")
        if not self.stages:
            raise ValueError("stages must hold at least one StageSpec")
        object.__setattr__(self, "stages", tuple(self.stages))
        object.__setattr__(self, "unscaled_depth_stages", tuple(self.unscaled_depth_stages))

    # --- what the builder derives from the configuration -------------------------------
    def channels(self, base: int, scale: bool = True) -> int:
        return round_channels(base, self.width) if scale else base

    @property
    def stem_out(self) -> int:
        return self.channels(self.stem_channels, self.scale_stem_and_head)

    @property
    def head_out(self) -> int:
        return self.channels(self.head_channels, self.scale_stem_and_head)

    def stage_strides(self) -> list[int]:
        """Strides of the stem followed by each stage (the cifar stem removes two halvings)."""
        strides = [2] + [stage.stride for stage in self.stages]
        if self.stem == "cifar":
            strides[0] = 1
            first_downsampling_stage = next((i for i in range(1, len(strides)) if strides[i] == 2), None)
            if first_downsampling_stage is not None:
                strides[first_downsampling_stage] = 1
        return strides

    def scaled_stages(self) -> list[StageSpec]:
        """The stages after width and depth scaling: what the builder actually stacks."""
        strides = self.stage_strides()[1:]
        stages = []
        for index, (stage, stride) in enumerate(zip(self.stages, strides)):
            repeats = stage.repeats if index in self.unscaled_depth_stages else round_repeats(stage.repeats, self.depth)
            stages.append(replace(stage, channels=round_channels(stage.channels, self.width), repeats=repeats, stride=stride))
        return stages

    @property
    def total_stride(self) -> int:
        product = 1
        for stride in self.stage_strides():
            product *= stride
        return product

    @property
    def min_resolution(self) -> int:
        """The smallest input that still leaves at least a 1x1 feature map for every stride."""
        return self.total_stride


class EfficientNet(nn.Module):
    """stem -> stages of MBConv blocks -> head (1x1 conv) -> global pool -> dropout -> linear."""

    def __init__(self, config: EfficientNetConfig) -> None:
        super().__init__()
        self.config = config
        norm = dict(bn_eps=config.bn_eps, bn_momentum=config.bn_momentum)
        stem_stride = config.stage_strides()[0]
        self.stem = ConvBNAct(3, config.stem_out, 3, stem_stride, activation=config.activation, **norm)

        stages = config.scaled_stages()
        block_count = sum(stage.repeats for stage in stages)
        block_index = 0
        in_channels = config.stem_out
        stage_modules = []
        for stage in stages:
            blocks = []
            for repeat in range(stage.repeats):
                blocks.append(
                    MBConv(
                        in_channels,
                        stage.channels,
                        stage.kernel_size,
                        stage.stride if repeat == 0 else 1,
                        stage.expand_ratio,
                        stage.se_ratio,
                        # Linear schedule: later blocks are dropped more often.
                        drop_path_rate=config.drop_path_rate * block_index / block_count,
                        activation=config.activation,
                        **norm,
                    )
                )
                in_channels = stage.channels
                block_index += 1
            stage_modules.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stage_modules)

        self.head = ConvBNAct(in_channels, config.head_out, 1, activation=config.activation, **norm)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(config.head_out, config.num_classes))
        self.reset_parameters()

    @property
    def min_resolution(self) -> int:
        return self.config.min_resolution

    def reset_parameters(self) -> None:
        """The initialisation of torchvision (and of the official code, up to its TF quirks)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                bound = 1.0 / module.out_features**0.5
                nn.init.uniform_(module.weight, -bound, bound)
                nn.init.zeros_(module.bias)
        if self.config.zero_init_last_bn:
            for module in self.modules():
                if isinstance(module, MBConv) and module.use_residual:
                    nn.init.zeros_(module.project.bn.weight)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error for an input this network cannot take."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"input must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"input must have shape (batch, 3, height, width), got {tuple(x.shape)}")
        if min(x.shape[-2:]) < self.min_resolution:
            raise ValueError(
                f"resolution {tuple(x.shape[-2:])} is too small: this network downsamples "
                f"{self.min_resolution}x, so inputs need at least {self.min_resolution} pixels a side"
            )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map, before pooling (batch, head channels, h, w)."""
        return self.head(self.stages(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting() and not torch.compiler.is_compiling():
            self.check_input(x)
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def build(config: EfficientNetConfig, seed: int | None = None) -> EfficientNet:
    """The one builder: a configuration in, a freshly initialised network out.

    ``seed`` fixes the initial weights: the same seed gives the same network whatever the
    process drew before (the weights ``torch.manual_seed(seed)`` then a build would give), and
    the process's own random generator is left as it was.
    """
    if not isinstance(config, EfficientNetConfig):
        raise TypeError(f"config must be an EfficientNetConfig, got {type(config).__name__}")
    if seed is None:
        return EfficientNet(config)
    seed = check_int("seed", seed, minimum=0)
    with torch.random.fork_rng(devices=[]):  # the weights are drawn on the CPU
        torch.manual_seed(seed)
        return EfficientNet(config)


def efficientnet(
    width: float = 1.0,
    depth: float = 1.0,
    *,
    num_classes: int = 1000,
    dropout: float = 0.2,
    stem: str = "imagenet",
    **overrides,
) -> EfficientNet:
    """B0 scaled by ``width`` and ``depth``; ``stem="cifar"`` for 32x32 inputs.

    Extra keyword arguments are fields of ``EfficientNetConfig`` (for example
    ``drop_path_rate=0.1`` or ``activation="relu6"``).
    """
    unknown = set(overrides) - set(EfficientNetConfig.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown argument(s) {sorted(unknown)}; see EfficientNetConfig for the options")
    return build(EfficientNetConfig(width=width, depth=depth, num_classes=num_classes, dropout=dropout, stem=stem, **overrides))


# --- the published families -------------------------------------------------------------


def variant_config(name: str, num_classes: int = 1000, **overrides) -> EfficientNetConfig:
    """The configuration of a published model: 'b0'...'b7' or 'lite0'...'lite4'."""
    key = name.lower().removeprefix("efficientnet_").removeprefix("efficientnet-") if isinstance(name, str) else name
    check_choice("variant", key, list(OFFICIAL_VARIANTS) + list(LITE_VARIANTS))
    if key in OFFICIAL_VARIANTS:
        v = OFFICIAL_VARIANTS[key]
        base = dict(width=v.width, depth=v.depth, dropout=v.dropout, resolution=v.resolution)
    else:
        v = LITE_VARIANTS[key]
        base = dict(
            width=v.width,
            depth=v.depth,
            dropout=v.dropout,
            resolution=v.resolution,
            stages=tuple(replace(stage, se_ratio=0.0) for stage in B0_STAGES),
            activation="relu6",
            scale_stem_and_head=False,
            unscaled_depth_stages=(0, len(B0_STAGES) - 1),
        )
    base.update(overrides)
    return EfficientNetConfig(num_classes=num_classes, **base)


def create_model(name: str, num_classes: int = 1000, **overrides) -> EfficientNet:
    """Build a published model by name, e.g. ``create_model("b3", num_classes=10)``."""
    return build(variant_config(name, num_classes, **overrides))


def efficientnet_b0(num_classes: int = 1000, **overrides) -> EfficientNet:
    return create_model("b0", num_classes, **overrides)


def efficientnet_b1(num_classes: int = 1000, **overrides) -> EfficientNet:
    return create_model("b1", num_classes, **overrides)


def efficientnet_b2(num_classes: int = 1000, **overrides) -> EfficientNet:
    return create_model("b2", num_classes, **overrides)


def efficientnet_b3(num_classes: int = 1000, **overrides) -> EfficientNet:
    return create_model("b3", num_classes, **overrides)


def efficientnet_b4(num_classes: int = 1000, **overrides) -> EfficientNet:
    return create_model("b4", num_classes, **overrides)


def efficientnet_b5(num_classes: int = 1000, **overrides) -> EfficientNet:
    return create_model("b5", num_classes, **overrides)


def efficientnet_b6(num_classes: int = 1000, **overrides) -> EfficientNet:
    return create_model("b6", num_classes, **overrides)


def efficientnet_b7(num_classes: int = 1000, **overrides) -> EfficientNet:
    return create_model("b7", num_classes, **overrides)


# --- weights from torchvision and timm --------------------------------------------------


def copy_weights_in_order(source: nn.Module, target: nn.Module) -> nn.Module:
    """Copy every parameter and buffer of ``source`` into ``target``, matched by position.

    The two networks must be the same architecture laid out in the same order (true of
    torchvision, timm and effnet_lab EfficientNets): the names differ, the shapes must not.
    """
    source_state = list(source.state_dict().items())
    target_state = target.state_dict()
    if len(source_state) != len(target_state):
        raise ValueError(
            f"the models differ: {len(source_state)} tensors in the source, {len(target_state)} in the target"
        )
    new_state = {}
    for (source_name, tensor), (target_name, target_tensor) in zip(source_state, target_state.items()):
        if tensor.shape != target_tensor.shape:
            raise ValueError(
                f"the models differ at {source_name} {tuple(tensor.shape)} -> {target_name} {tuple(target_tensor.shape)}"
            )
        new_state[target_name] = tensor.detach().clone()
    target.load_state_dict(new_state)
    return target


def _matching_config(source: nn.Module, names: Iterable[str], **overrides) -> EfficientNetConfig:
    """The effnet_lab configuration whose tensors have the same shapes as ``source``'s."""
    source_shapes = [tuple(t.shape) for t in source.state_dict().values()]
    for name in names:
        config = variant_config(name, **overrides)
        with torch.device("meta"):  # shapes only: no memory, no initialisation cost
            candidate = EfficientNet(config)
        if [tuple(t.shape) for t in candidate.state_dict().values()] == source_shapes:
            return config
    raise ValueError(f"{type(source).__name__} does not match any of the EfficientNet variants {list(names)}")


def _norm_settings(source: nn.Module) -> dict:
    bn = next(m for m in source.modules() if isinstance(m, nn.BatchNorm2d))
    return dict(bn_eps=bn.eps, bn_momentum=bn.momentum if bn.momentum is not None else 0.1)


def _classifier_settings(source: nn.Module) -> dict:
    linear = [m for m in source.modules() if isinstance(m, nn.Linear)][-1]
    dropouts = [m for m in source.modules() if isinstance(m, nn.Dropout)]
    settings = dict(num_classes=linear.out_features)
    if dropouts:
        settings["dropout"] = dropouts[-1].p
    return settings


def from_torchvision(tv_model: nn.Module) -> EfficientNet:
    """The effnet_lab EfficientNet equivalent to a torchvision ``efficientnet_bN``, with its weights.

    With internet, this is how to start from ImageNet-pretrained weights::

        import torchvision
        tv = torchvision.models.efficientnet_b0(weights="IMAGENET1K_V1")
        model = effnet_lab.from_torchvision(tv)
    """
    if not isinstance(tv_model, nn.Module):
        raise TypeError(f"tv_model must be a torchvision EfficientNet, got {type(tv_model).__name__}")
    overrides = {**_norm_settings(tv_model), **_classifier_settings(tv_model)}
    config = _matching_config(tv_model, OFFICIAL_VARIANTS, **overrides)
    model = copy_weights_in_order(tv_model, build(config))
    return model.train(tv_model.training)


def from_timm(timm_model: nn.Module) -> EfficientNet:
    """The effnet_lab equivalent of a timm ``efficientnet_bN`` or ``efficientnet_liteN``, with its weights."""
    if not isinstance(timm_model, nn.Module):
        raise TypeError(f"timm_model must be a timm EfficientNet, got {type(timm_model).__name__}")
    overrides = {**_norm_settings(timm_model), **_classifier_settings(timm_model)}
    names = [*OFFICIAL_VARIANTS, *LITE_VARIANTS]
    config = _matching_config(timm_model, names, **overrides)
    model = copy_weights_in_order(timm_model, build(config))
    return model.train(timm_model.training)
