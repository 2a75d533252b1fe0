"""N same-shaped networks trained as one grouped network: several seeds in one training step.

Lesson 05 trains many small EfficientNets, three seeds each. On a large GPU the training step
of such a small network is bound by kernel launches, not by arithmetic: a step costs about
the same whatever the network's size. Packing N networks into one makes every kernel do the
work of N: each layer of the packed network holds the N models' layers side by side on the
channel axis.

- ``Conv2d(C_in -> C_out, groups g)`` becomes ``Conv2d(N*C_in -> N*C_out, groups N*g)``, the
  N weights concatenated: the group boundaries keep model i's output channels computed from
  model i's input channels only. (A depthwise convolution stays depthwise.)
- ``BatchNorm2d(C)`` becomes ``BatchNorm2d(N*C)``: its statistics are per channel, hence per model.
- ``Linear(in -> out)`` becomes a ``GroupedLinear``: weights (N, out, in), one batched product.
- Activations, pooling, squeeze-and-excitation gates, residual adds, flatten and dropout act
  channel by channel (or element by element), so they work unchanged: flattening
  (B, N*C, h, w) keeps each model's C*h*w numbers together, model after model.
- Stochastic depth drops a residual branch per *sample*; packed, it draws one coin per
  sample and model (``PackedStochasticDepth``), so the N models' masks stay independent.

Model i's images are channels 3i..3i+2 of one (B, 3N, H, W) input (``stack_images``); the
output is (B, N, classes). ``packed_loss`` is the sum over models of each model's mean loss:
the models share no weight, so each weight gets exactly the gradient it would get alone.
SGD, Adam and AdamW update element by element, so one optimizer over the packed weights is N
independent optimizers (anything that mixes parameters, such as clipping the gradients'
global norm, would couple the models). ``unpack`` gives back N ordinary networks.

    packed = pack([build(config, seed=s) for s in (0, 1, 2)])
    logits = packed(stack_images([x0, x1, x2]))               # (B, 3, classes)
    loss = packed_loss(logits, stack_labels([y0, y1, y2]))
    models = unpack(packed)                                     # three EfficientNets again
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ConvBNAct, DepthwiseSeparableConv, MBConv, SqueezeExcitation, StochasticDepth
from .model import EfficientNet

# Layers that work unchanged on the channel-stacked tensor (channel- or element-wise).
UNCHANGED_LAYERS = (nn.Identity, nn.SiLU, nn.ReLU, nn.ReLU6, nn.Sigmoid, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Dropout)
# Containers whose own forward only chains, gates (per channel) and adds their children.
CONTAINERS = (nn.Sequential, ConvBNAct, DepthwiseSeparableConv, SqueezeExcitation, MBConv, EfficientNet)
# Layers that pack into a different layer.
PACKED_LAYERS = (nn.Conv2d, nn.BatchNorm2d, nn.Linear, StochasticDepth)


class GroupedLinear(nn.Module):
    """N independent linear layers in one: input (B, N*in) or (B, N, in), output (B, N, out)."""

    def __init__(self, n_models: int, in_features: int, out_features: int, bias: bool = True,
                 device=None, dtype=None) -> None:
        super().__init__()
        self.n_models, self.in_features, self.out_features = n_models, in_features, out_features
        self.weight = nn.Parameter(torch.empty(n_models, out_features, in_features, device=device, dtype=dtype))
        # Flat, (N*out,): a bias stays 1-D, so rules such as "no weight decay on 1-D
        # parameters" (effnet_lab.train) treat it as they treat a Linear's bias.
        self.bias = nn.Parameter(torch.zeros(n_models * out_features, device=device, dtype=dtype)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], self.n_models, self.in_features)
        out = torch.einsum("bni,noi->bno", x, self.weight)  # model n's rows times model n's weights
        return out if self.bias is None else out + self.bias.view(self.n_models, self.out_features)

    @classmethod
    def stack(cls, linears: Sequence[nn.Linear]) -> GroupedLinear:
        first = linears[0]
        grouped = cls(len(linears), first.in_features, first.out_features, first.bias is not None,
                      device=first.weight.device, dtype=first.weight.dtype)
        with torch.no_grad():
            grouped.weight.copy_(torch.stack([linear.weight for linear in linears]))
            if grouped.bias is not None:
                grouped.bias.copy_(torch.cat([linear.bias for linear in linears]))
        return grouped

    def linear(self, i: int) -> nn.Linear:
        """Model i's layer as an ordinary ``nn.Linear`` (a copy)."""
        single = nn.Linear(self.in_features, self.out_features, self.bias is not None,
                           device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            single.weight.copy_(self.weight[i])
            if self.bias is not None:
                single.bias.copy_(self.bias.view(self.n_models, -1)[i])
        return single

    def extra_repr(self) -> str:
        return f"n_models={self.n_models}, in_features={self.in_features}, out_features={self.out_features}"


class PackedStochasticDepth(StochasticDepth):
    """Stochastic depth for N packed models: one coin per sample *and model*."""

    def __init__(self, p: float, n_models: int) -> None:
        super().__init__(p)
        self.n_models = n_models

    def forward(self, branch: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return branch
        keep = 1.0 - self.p
        mask = torch.empty(branch.shape[0], self.n_models, 1, 1, device=branch.device, dtype=branch.dtype)
        mask.bernoulli_(keep).div_(keep)
        # Model n's coin covers its C channels: channels n*C .. (n+1)*C - 1.
        return branch * mask.repeat_interleave(branch.shape[1] // self.n_models, dim=1)

    def extra_repr(self) -> str:
        return f"p={self.p}, n_models={self.n_models}"


class PackedNetwork(nn.Module):
    """N networks computed as one: input (B, 3N, H, W) or a list of N batches, output (B, N, classes)."""

    def __init__(self, network: nn.Module, n_models: int) -> None:
        super().__init__()
        self.network, self.n_models = network, n_models

    def forward(self, images: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        x = images if isinstance(images, torch.Tensor) else stack_images(images)
        if x.dim() != 4 or x.shape[1] != 3 * self.n_models:
            raise ValueError(f"input must have shape (batch, 3 x {self.n_models} models, height, width), "
                             f"got {tuple(x.shape)}: stack the models' batches with stack_images")
        net = self.network
        if isinstance(net, EfficientNet):  # its own forward checks for 3 channels: run its body
            return net.classifier(torch.flatten(net.pool(net.features(x)), 1))
        return net(x)


def stack_images(batches: Sequence[torch.Tensor]) -> torch.Tensor:
    """N batches of images (B, 3, H, W), one per model, as one input (B, 3N, H, W)."""
    return torch.cat(list(batches), dim=1)


def stack_labels(labels: Sequence[torch.Tensor]) -> torch.Tensor:
    """N label vectors (B,), one per model, as one tensor (B, N)."""
    return torch.stack(list(labels), dim=1)


def packed_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """The sum over the N models of each model's mean cross-entropy: logits (B, N, classes), labels (B, N)."""
    # cross_entropy wants the classes on dim 1 and averages over the B*N other entries;
    # times N, that is the sum of the N models' means, in one kernel instead of N.
    return F.cross_entropy(logits.transpose(1, 2), labels, label_smoothing=label_smoothing) * logits.shape[1]


# --- packing and unpacking ----------------------------------------------------------------


def pack(models: Sequence[nn.Module]) -> PackedNetwork:
    """One grouped network computing ``models`` (same architecture, any weights) side by side."""
    models = list(models)
    if not models or not all(isinstance(m, nn.Module) for m in models):
        raise ValueError("pack needs a non-empty list of networks (torch.nn.Module)")
    _check_packable(models[0])
    reference = _layout(models[0])
    for i, model in enumerate(models[1:], start=1):
        _check_same_layout(reference, _layout(model), i)
    places = {(t.device, t.dtype) for m in models for t in m.state_dict().values() if t.is_floating_point()}
    if len(places) > 1:
        raise ValueError(f"the models must be on one device with one dtype, found {sorted(map(str, places))}")

    def pack_leaf(name: str, _: nn.Module) -> nn.Module:
        leaves = [model.get_submodule(name) for model in models]
        first, n = leaves[0], len(leaves)
        if isinstance(first, nn.Conv2d):
            return _copy_tensors(_conv_like(first, lambda k: k * n), leaves, torch.cat)
        if isinstance(first, nn.BatchNorm2d):
            return _copy_tensors(_batch_norm_like(first, lambda k: k * n), leaves, torch.cat)
        if isinstance(first, nn.Linear):
            return GroupedLinear.stack(leaves)
        if isinstance(first, StochasticDepth):
            return PackedStochasticDepth(first.p, n)
        return copy.deepcopy(first)

    network = _replace_leaves(copy.deepcopy(models[0]), pack_leaf)
    return PackedNetwork(network, len(models)).train(models[0].training)


def unpack(packed: PackedNetwork) -> list[nn.Module]:
    """The N networks inside ``packed``, as ordinary networks with its current weights and statistics."""
    if not isinstance(packed, PackedNetwork):
        raise TypeError(f"unpack takes a PackedNetwork (from pack), got {type(packed).__name__}")
    n = packed.n_models

    def unpack_leaf(i: int, leaf: nn.Module) -> nn.Module:
        if isinstance(leaf, nn.Conv2d):
            return _copy_tensors(_conv_like(leaf, lambda k: k // n), [leaf], lambda t: t[0].chunk(n)[i])
        if isinstance(leaf, nn.BatchNorm2d):
            return _copy_tensors(_batch_norm_like(leaf, lambda k: k // n), [leaf], lambda t: t[0].chunk(n)[i])
        if isinstance(leaf, GroupedLinear):
            return leaf.linear(i)
        if isinstance(leaf, PackedStochasticDepth):
            return StochasticDepth(leaf.p)
        return copy.deepcopy(leaf)

    networks = [_replace_leaves(copy.deepcopy(packed.network), lambda _, leaf, i=i: unpack_leaf(i, leaf))
                for i in range(n)]
    return [network.train(packed.training) for network in networks]


def _conv_like(conv: nn.Conv2d, resize: Callable[[int], int]) -> nn.Conv2d:
    """An uninitialised Conv2d like ``conv`` with its channel and group counts resized."""
    return nn.Conv2d(resize(conv.in_channels), resize(conv.out_channels), conv.kernel_size, conv.stride,
                     conv.padding, conv.dilation, resize(conv.groups), conv.bias is not None, conv.padding_mode,
                     device=conv.weight.device, dtype=conv.weight.dtype)


def _batch_norm_like(bn: nn.BatchNorm2d, resize: Callable[[int], int]) -> nn.BatchNorm2d:
    tensor = next(iter(bn.state_dict().values()))
    return nn.BatchNorm2d(resize(bn.num_features), bn.eps, bn.momentum, bn.affine, bn.track_running_stats,
                          device=tensor.device, dtype=tensor.dtype)


def _copy_tensors(target: nn.Module, sources: list[nn.Module], combine: Callable) -> nn.Module:
    """Fill every parameter and buffer of ``target`` with ``combine`` of the sources' ones.

    A scalar buffer (batch norm's ``num_batches_tracked``) is copied from the first source.
    """
    with torch.no_grad():
        for name, tensor in target.state_dict().items():  # state_dict tensors share the storage
            parts = [source.state_dict()[name] for source in sources]
            tensor.copy_(combine(parts) if tensor.dim() else parts[0])
    return target


def _replace_leaves(root: nn.Module, make_leaf: Callable[[str, nn.Module], nn.Module]) -> nn.Module:
    """``root`` with every leaf module replaced by ``make_leaf(name, leaf)`` (in place)."""
    for name, module in list(root.named_modules()):
        if name and next(module.children(), None) is None:
            parent, _, child = name.rpartition(".")
            setattr(root.get_submodule(parent), child, make_leaf(name, module))
    return root


def _check_packable(model: nn.Module) -> None:
    for name, module in model.named_modules():
        where = f"'{name}' ({type(module).__name__})" if name else f"the model ({type(module).__name__})"
        if next(module.children(), None) is not None:
            if not isinstance(module, CONTAINERS) or next(module.parameters(recurse=False), None) is not None:
                raise ValueError(f"cannot pack {where}: packing knows the layers of effnet_lab's "
                                 f"EfficientNet and nn.Sequential, not what this module's forward does")
        elif not isinstance(module, PACKED_LAYERS + UNCHANGED_LAYERS):
            raise ValueError(f"cannot pack {where}: supported layers are "
                             f"{', '.join(t.__name__ for t in PACKED_LAYERS + UNCHANGED_LAYERS)}")


def _layout(model: nn.Module) -> list[tuple]:
    """Every module's name, type and settings, and its own tensors' shapes."""
    return [(name, type(module).__name__, module.extra_repr(),
             [(key, tuple(t.shape)) for key, t in [*module.named_parameters(recurse=False),
                                                    *module.named_buffers(recurse=False)]])
            for name, module in model.named_modules()]


def _check_same_layout(reference: list[tuple], layout: list[tuple], index: int) -> None:
    for ours, theirs in zip(reference, layout):
        if ours != theirs:
            raise ValueError(f"model {index} differs from model 0 at '{theirs[0] or 'the top'}': "
                             f"{theirs[1]}({theirs[2]}) against {ours[1]}({ours[2]}); only networks of "
                             f"the same shape can be packed")
    if len(reference) != len(layout):
        raise ValueError(f"model {index} has {len(layout)} modules, model 0 has {len(reference)}; "
                         f"only networks of the same shape can be packed")
