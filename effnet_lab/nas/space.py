"""What the search may propose, and how a proposal is scored (lesson 01).

``SearchSpace`` holds the decisions as data: per stage of a narrow 4-stage network, kernel
3 or 5, expand ratio 1, 3 or 6, 1-3 layers, squeeze-and-excitation on or off (and,
optionally, a width multiplier). ``space.decode(choices)`` turns a list of choices into an
``EfficientNetConfig``, so every child is built by the core builder, and ``measure`` counts
its MACs and parameters with ``effnet_lab.profile``.

``Reward`` is the score of EfficientNet's search (Tan & Le 2019, section 4, after MnasNet):

    reward(m) = ACC(m) * (MACs(m) / T) ** w        w = -0.07,  T = 400M on ImageNet
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass
from typing import Sequence

import torch

from ..checks import check_int, check_number
from ..model import EfficientNetConfig, StageSpec, build
from ..profile import count_params, macs_from_config
from ..scaling import round_channels

RESOLUTION = 32  # CIFAR images; every child is measured and trained at this size

# A narrow base for 32x32 children: four stages of B0's first five widths, then a head
# 4x the last stage (as B0's 1280 = 4 x 320). With the cifar stem the strides become
# 1, 1, 2, 2, so the stages see 32, 32, 16 and 8 pixels a side.
CIFAR_BASE: tuple[tuple[int, int], ...] = ((16, 1), (24, 2), (40, 2), (80, 2))  # (channels, stride)


@dataclass(frozen=True)
class Decision:
    """One question the controller answers: ``name`` of stage ``stage``, among ``options``."""

    stage: int
    name: str
    options: tuple

    def __str__(self) -> str:
        return f"stage {self.stage + 1} {self.name} {list(self.options)}"


@dataclass(frozen=True)
class SearchSpace:
    """Which networks the search may propose: per stage, one option of each decision.

    A decision with a single option is fixed, not searched (``widths=(1.0,)`` by default).
    Channels and strides come from ``base``; everything else from the choices.
    """

    base: tuple[tuple[int, int], ...] = CIFAR_BASE
    kernel_sizes: tuple[int, ...] = (3, 5)
    expand_ratios: tuple[int, ...] = (1, 3, 6)
    layers: tuple[int, ...] = (1, 2, 3)
    se: tuple[bool, ...] = (False, True)
    widths: tuple[float, ...] = (1.0,)
    stem_channels: int = 16
    head_channels: int = 320
    num_classes: int = 10
    dropout: float = 0.1  # short child trainings gain little from heavy regularisation

    def __post_init__(self) -> None:
        if not self.base:
            raise ValueError("the search space is empty: base must hold at least one (channels, stride) stage")
        for index, stage in enumerate(self.base):
            if not (isinstance(stage, (tuple, list)) and len(stage) == 2):
                raise TypeError(f"base[{index}] must be a (channels, stride) pair, got {stage!r}")
            check_int(f"base[{index}] channels", stage[0], minimum=1)
            if stage[1] not in (1, 2):
                raise ValueError(f"base[{index}] stride must be 1 or 2, got {stage[1]!r}")
        for name in ("kernel_sizes", "expand_ratios", "layers", "se", "widths"):
            options = tuple(getattr(self, name))
            if not options:
                raise ValueError(f"the search space is empty: {name} has no options")
            if len(set(options)) != len(options):
                raise ValueError(f"{name} has repeated options: {list(options)}")
            object.__setattr__(self, name, options)
        object.__setattr__(self, "base", tuple(tuple(stage) for stage in self.base))
        for k in self.kernel_sizes:
            if check_int("kernel_sizes", k, minimum=1) % 2 == 0:
                raise ValueError(f"kernel_sizes must be odd, got {k}")
        for e in self.expand_ratios:
            check_number("expand_ratios", e, minimum=1.0)
        for n in self.layers:
            check_int("layers", n, minimum=1)
        for s in self.se:
            if not isinstance(s, bool):
                raise TypeError(f"se options must be True or False, got {s!r}")
        for width in self.widths:
            check_number("widths", width, exclusive_minimum=0.0)
        if not self.decisions():
            raise ValueError("the search space is empty: every decision has a single option, nothing to search")

    # Per stage, in this order (the controller answers them in the same order).
    _FIELDS = (("kernel", "kernel_sizes"), ("expand", "expand_ratios"), ("layers", "layers"),
               ("se", "se"), ("width", "widths"))

    def decisions(self) -> list[Decision]:
        """The questions of one architecture, stage by stage (fixed ones left out)."""
        return [
            Decision(stage, name, getattr(self, attribute))
            for stage in range(len(self.base))
            for name, attribute in self._FIELDS
            if len(getattr(self, attribute)) > 1
        ]

    @property
    def decision_sizes(self) -> tuple[int, ...]:
        return tuple(len(d.options) for d in self.decisions())

    @property
    def size(self) -> int:
        """How many different architectures the space holds."""
        return math.prod(self.decision_sizes)

    def check_choices(self, choices: Sequence[int]) -> tuple[int, ...]:
        sizes = self.decision_sizes
        if isinstance(choices, (str, bytes)) or not isinstance(choices, Sequence):
            raise TypeError(f"choices must be a sequence of {len(sizes)} integers, got {choices!r}")
        if len(choices) != len(sizes):
            raise ValueError(f"choices must hold {len(sizes)} integers (one per decision), got {len(choices)}")
        for i, (choice, n) in enumerate(zip(choices, sizes)):
            choice = check_int(f"choices[{i}]", choice, minimum=0)
            if choice >= n:
                raise ValueError(f"choices[{i}] ({self.decisions()[i]}) must be below {n}, got {choice}")
        return tuple(int(c) for c in choices)

    def stages(self, choices: Sequence[int]) -> list[dict]:
        """The chosen options per stage, e.g. ``[{'kernel': 5, 'expand': 6, ...}, ...]``."""
        choices = self.check_choices(choices)
        stages = [{name: getattr(self, attribute)[0] for name, attribute in self._FIELDS} for _ in self.base]
        for decision, choice in zip(self.decisions(), choices):
            stages[decision.stage][decision.name] = decision.options[choice]
        return stages

    def decode(self, choices: Sequence[int]) -> EfficientNetConfig:
        """The network the choices describe, as a core configuration (cifar stem)."""
        specs = tuple(
            StageSpec(
                expand_ratio=stage["expand"],
                kernel_size=stage["kernel"],
                stride=stride,
                channels=round_channels(channels, stage["width"]),
                repeats=stage["layers"],
                se_ratio=0.25 if stage["se"] else 0.0,
            )
            for stage, (channels, stride) in zip(self.stages(choices), self.base)
        )
        return EfficientNetConfig(
            num_classes=self.num_classes,
            dropout=self.dropout,
            stem="cifar",
            stages=specs,
            stem_channels=self.stem_channels,
            head_channels=self.head_channels,
            drop_path_rate=0.0,
            resolution=RESOLUTION,
        )

    def describe(self, choices: Sequence[int]) -> str:
        """A short name: 'k5 e6 x2 se | k3 e1 x1 | ...' (kernel, expand, layers, SE, width)."""
        parts = []
        for stage in self.stages(choices):
            text = f"k{stage['kernel']} e{stage['expand']:g} x{stage['layers']}" + (" se" if stage["se"] else "")
            if len(self.widths) > 1:
                text += f" w{stage['width']:g}"
            parts.append(text)
        return " | ".join(parts)

    def sample(self, generator: torch.Generator | None = None) -> tuple[int, ...]:
        """Choices drawn uniformly at random (what random search does)."""
        return tuple(int(torch.randint(n, (1,), generator=generator)) for n in self.decision_sizes)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


def arch_key(config: EfficientNetConfig) -> str:
    """What identifies a child in the cache: the network it builds, not how it was encoded."""
    stages = "|".join(
        f"k{s.kernel_size}e{s.expand_ratio:g}x{s.repeats}c{s.channels}s{s.stride}se{s.se_ratio:g}" for s in config.stages
    )
    return f"stem{config.stem_channels}|{stages}|head{config.head_channels}"


@functools.lru_cache(maxsize=4096)
def measure(config: EfficientNetConfig) -> tuple[int, int]:
    """(MACs at 32x32, parameters) of the network ``config`` builds: MACs worked out from the
    configuration (``profile.macs_from_config``, the package's one counter from a configuration),
    parameters from a shape-only copy."""
    with torch.device("meta"):  # shapes only: no memory, no weight initialisation
        model = build(config)
    return macs_from_config(config, RESOLUTION), count_params(model)


# --- the MnasNet reward ---------------------------------------------------------------------

# T for CIFAR children: about the median MACs of the default space's children at 32x32
# (the smallest costs 3.6M MACs, the largest 81M, a uniform random child 26M in the median). B0's search used T = 400M on ImageNet
# at 224 px, about the cost of the mobile models it competed with. With a single exponent
# T does not change which child wins (it multiplies every reward by the same T**-w); it
# sets where the cost factor is 1, so rewards read as accuracies near the target.
DEFAULT_TARGET_MACS = 25_000_000


@dataclass(frozen=True)
class Reward:
    """``ACC * (MACs / T) ** w``; with ``w_above``, MnasNet's two-sided form:
    exponent ``w`` at or below T and ``w_above`` above it (e.g. w=0, w_above=-1 is close to
    a hard budget)."""

    target_macs: float = DEFAULT_TARGET_MACS
    w: float = -0.07
    w_above: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "target_macs", check_number("target_macs (T)", self.target_macs, exclusive_minimum=0.0))
        object.__setattr__(self, "w", check_number("w", self.w))
        if self.w_above is not None:
            object.__setattr__(self, "w_above", check_number("w_above", self.w_above))

    def __call__(self, accuracy: float, macs: float) -> float:
        accuracy = check_number("accuracy", accuracy, minimum=0.0)
        if accuracy > 1.0:
            raise ValueError(f"accuracy must be a fraction in [0, 1], got {accuracy}")
        macs = check_number("macs", macs, exclusive_minimum=0.0)
        exponent = self.w if self.w_above is None or macs <= self.target_macs else self.w_above
        return accuracy * (macs / self.target_macs) ** exponent


def mnas_reward(accuracy: float, macs: float, target_macs: float = DEFAULT_TARGET_MACS, w: float = -0.07) -> float:
    """The reward of EfficientNet's search: ``accuracy * (macs / target_macs) ** w``."""
    return Reward(target_macs, w)(accuracy, macs)

