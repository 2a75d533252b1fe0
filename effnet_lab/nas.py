"""Neural architecture search, MnasNet style, small enough for a classroom (lesson 01).

EfficientNet-B0 was not designed by hand: a recurrent *controller* proposed networks one
decision at a time, each *child* network was trained and scored, and the controller was
pushed (with the policy gradient, REINFORCE) toward the decisions of well-scored children.
The score traded accuracy against cost (Tan & Le 2019, section 4, after MnasNet):

    reward(m) = ACC(m) * (MACs(m) / T) ** w        w = -0.07,  T = 400M on ImageNet

This module is that loop in miniature, for CIFAR:

1. ``SearchSpace``: the decisions, as data. Per stage of a narrow 4-stage network: kernel
   3 or 5, expand ratio 1, 3 or 6, 1-3 layers, squeeze-and-excitation on or off (and,
   optionally, a width multiplier). ``space.decode(choices)`` turns a list of choices into
   an ``EfficientNetConfig``, so every child is built by the core builder.
2. ``Controller``: an LSTM that samples the decisions one at a time, each conditioned on
   the previous one; ``Reinforce`` trains it with a moving-average baseline.
3. ``Reward``: the formula above, with MACs counted by ``effnet_lab.profile.count_macs``.
4. Evaluators score a child: ``TrainEvaluator`` trains it briefly on a stratified CIFAR
   subset (the training engine); ``ProxyEvaluator`` is a made-up formula of the
   architecture so the whole loop runs on a CPU in seconds (it is *not* an evaluation).
5. ``Search``: one policy (the controller, or random search as the baseline), a budget of
   samples, a JSON-lines log of every sampled child and a checkpoint after every step, so
   an interrupted search continues where it stopped; evaluations are cached by
   architecture, so no child is trained twice.

Figures for the lesson and the exercise checkers are at the end of the file.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import math
import os
import sys
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch import nn

from .checks import check_choice, check_int, check_number
from .files import atomic_write, save_torch, write_json, write_text
from .model import EfficientNetConfig, StageSpec, build
from .plots import plain_log_ticks
from .profile import count_macs, count_params
from .scaling import round_channels

RESOLUTION = 32  # CIFAR images; every child is measured and trained at this size

# --- 1. the search space ------------------------------------------------------------------

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
    """(MACs at 32x32, parameters) of the network ``config`` builds: the core's counters."""
    with torch.device("meta"):  # shapes only: no memory, no weight initialisation
        model = build(config)
    return count_macs(model, RESOLUTION), count_params(model)


# --- 2. the MnasNet reward ----------------------------------------------------------------

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


# --- 3. the controller and REINFORCE -------------------------------------------------------


@dataclass
class ControllerSample:
    choices: tuple[int, ...]
    log_prob: torch.Tensor  # log P(choices): the sum over decisions
    entropy: torch.Tensor  # summed entropy of each decision's distribution
    probs: list[torch.Tensor]  # each decision's distribution (for plots and tests)


class Controller(nn.Module):
    """An LSTM that writes an architecture one decision at a time (Zoph & Le 2017, ENAS).

    Step i: the cell reads an embedding of decision i-1's answer (a learned start vector
    for the first), and a small linear head per decision turns its state into the logits of
    decision i. Because the state carries over, later answers can depend on earlier ones.

    ``logit_bound`` c squashes the logits to c * tanh(z / c), as ENAS does (Pham et al.
    2018): no option's probability can reach zero, so a controller that committed early to
    a wrong answer still samples the alternative now and then, and can change its mind.
    """

    def __init__(self, decision_sizes: Sequence[int], hidden_size: int = 64, logit_bound: float | None = 2.5) -> None:
        super().__init__()
        if not decision_sizes:
            raise ValueError("the search space is empty: the controller needs at least one decision")
        self.decision_sizes = tuple(check_int("decision size", n, minimum=1) for n in decision_sizes)
        hidden_size = check_int("hidden_size", hidden_size, minimum=1)
        self.logit_bound = None if logit_bound is None else check_number("logit_bound", logit_bound, exclusive_minimum=0.0)
        self.start = nn.Parameter(torch.zeros(1, hidden_size))
        self.cell = nn.LSTMCell(hidden_size, hidden_size)
        self.embeddings = nn.ModuleList(nn.Embedding(n, hidden_size) for n in self.decision_sizes)
        self.heads = nn.ModuleList(nn.Linear(hidden_size, n) for n in self.decision_sizes)
        # Small weights, as in ENAS: the first policy is close to uniform, so early samples
        # explore the whole space.
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -0.1, 0.1)

    def forward(self, choices: Sequence[int] | None = None, generator: torch.Generator | None = None) -> ControllerSample:
        """Sample an architecture, or (with ``choices``) score a given one."""
        if choices is not None and len(choices) != len(self.decision_sizes):
            raise ValueError(f"choices must hold {len(self.decision_sizes)} integers, got {len(choices)}")
        hidden = torch.zeros_like(self.start)
        state = (hidden, hidden)
        x = self.start
        chosen, log_probs, entropies, all_probs = [], [], [], []
        for i, head in enumerate(self.heads):
            state = self.cell(x, state)
            logits = head(state[0])[0]
            if self.logit_bound is not None:
                logits = self.logit_bound * torch.tanh(logits / self.logit_bound)
            log_p = torch.log_softmax(logits, dim=0)  # log-probabilities of the options
            probs = log_p.exp()
            if choices is None:
                choice = int(torch.multinomial(probs.detach(), 1, generator=generator))
            else:
                choice = int(choices[i])
            chosen.append(choice)
            log_probs.append(log_p[choice])
            entropies.append(-(probs * log_p).sum())
            all_probs.append(probs)
            x = self.embeddings[i](torch.tensor([choice]))
        return ControllerSample(tuple(chosen), torch.stack(log_probs).sum(), torch.stack(entropies).sum(), all_probs)


class Reinforce:
    """REINFORCE (Williams 1992) with a moving-average baseline and an entropy bonus.

    loss = -(R - b) * log P(choices) - entropy_weight * H;   b <- decay * b + (1 - decay) * R

    The baseline b is the recent average reward: children better than usual (R > b) have
    their decisions made more likely, worse ones less likely. The first reward sets b.
    """

    def __init__(self, controller: Controller, lr: float = 0.005, baseline_decay: float = 0.9, entropy_weight: float = 0.0):
        self.controller = controller
        self.lr = check_number("lr", lr, exclusive_minimum=0.0)
        self.baseline_decay = check_number("baseline_decay", baseline_decay, minimum=0.0)
        if self.baseline_decay >= 1.0:
            raise ValueError(f"baseline_decay must be below 1, got {baseline_decay}")
        self.entropy_weight = check_number("entropy_weight", entropy_weight, minimum=0.0)
        self.optimizer = torch.optim.Adam(controller.parameters(), lr=self.lr)
        self.baseline: float | None = None

    def step(self, choices: Sequence[int], reward: float) -> dict:
        reward = check_number("reward", reward)
        if self.baseline is None:
            self.baseline = reward
        advantage = reward - self.baseline
        sample = self.controller(choices)
        loss = -advantage * sample.log_prob - self.entropy_weight * sample.entropy
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.baseline = self.baseline_decay * self.baseline + (1 - self.baseline_decay) * reward
        return {"advantage": advantage, "baseline": self.baseline, "log_prob": sample.log_prob.item(),
                "entropy": sample.entropy.item()}

    def state_dict(self) -> dict:
        return {"controller": self.controller.state_dict(), "optimizer": self.optimizer.state_dict(),
                "baseline": self.baseline}

    def load_state_dict(self, state: dict) -> None:
        self.controller.load_state_dict(state["controller"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline = state["baseline"]


@dataclass(frozen=True)
class ControllerSettings:
    hidden_size: int = 64
    logit_bound: float | None = 2.5
    lr: float = 0.005
    baseline_decay: float = 0.9
    entropy_weight: float = 0.0


class ControllerPolicy:
    """Proposes with the LSTM controller and learns from each reward."""

    name = "controller"

    def __init__(self, space: SearchSpace, seed: int = 0, settings: ControllerSettings = ControllerSettings()):
        with torch.random.fork_rng(devices=[]):  # seed the initial weights, leave the global RNG alone
            torch.manual_seed(seed)
            self.controller = Controller(space.decision_sizes, settings.hidden_size, settings.logit_bound)
        self.trainer = Reinforce(self.controller, settings.lr, settings.baseline_decay, settings.entropy_weight)
        self.generator = torch.Generator().manual_seed(seed)

    def propose(self) -> tuple[int, ...]:
        with torch.no_grad():
            return self.controller(generator=self.generator).choices

    def update(self, choices: Sequence[int], reward: float) -> dict:
        return self.trainer.step(choices, reward)

    def probabilities(self, choices: Sequence[int]) -> float:
        """P(choices) under the current policy."""
        with torch.no_grad():
            return float(self.controller(choices).log_prob.exp())

    def state_dict(self) -> dict:
        return {**self.trainer.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.trainer.load_state_dict(state)
        self.generator.set_state(state["generator"])


class RandomPolicy:
    """The baseline: every decision uniformly at random, learning nothing."""

    name = "random"

    def __init__(self, space: SearchSpace, seed: int = 0):
        self.space = space
        self.generator = torch.Generator().manual_seed(seed)

    def propose(self) -> tuple[int, ...]:
        return self.space.sample(self.generator)

    def update(self, choices: Sequence[int], reward: float) -> dict:
        return {}

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


POLICIES = ("controller", "random")


def make_policy(name: str, space: SearchSpace, seed: int = 0, settings: ControllerSettings = ControllerSettings()):
    check_choice("policy", name, POLICIES)
    return ControllerPolicy(space, seed, settings) if name == "controller" else RandomPolicy(space, seed)


# --- 4. evaluating a child -----------------------------------------------------------------
# An evaluator takes a child's configuration and returns a dict with at least
# ``accuracy`` (a fraction), ``macs`` and ``params``; ``signature()`` says what the
# numbers mean (cached results are reused only under the same signature), and ``real``
# whether they are a real measurement.

PROXY_WARNING = (
    "PROXY evaluator: 'accuracy' is a made-up formula of the architecture (diminishing returns "
    "in MACs, small bonuses for SE and 5x5 kernels), NOT a real evaluation. Use --evaluator train "
    "for real (short) training on CIFAR."
)


class ProxyEvaluator:
    """A deterministic stand-in for training, so the search loop runs in seconds on a CPU.

    accuracy = 0.90 - 0.11 * (MACs / 15M) ** -0.5 + 0.004 * (#stages with SE)
               + 0.003 * (#stages with 5x5 kernels) + noise(architecture, +-0.005)

    The shape (accuracy grows with compute, ever more slowly) is what real results tend to
    look like, so the reward's trade-off behaves as in a real search. The numbers are not
    measurements of anything.
    """

    name = "proxy"
    real = False

    def signature(self) -> dict:
        return {"name": self.name, "version": 1}

    def __call__(self, config: EfficientNetConfig) -> dict:
        macs, params = measure(config)
        se_stages = sum(stage.se_ratio > 0 for stage in config.stages)
        big_kernels = sum(stage.kernel_size >= 5 for stage in config.stages)
        noise = (zlib.crc32(arch_key(config).encode()) / 2**32 - 0.5) * 0.01  # fixed per architecture
        accuracy = 0.90 - 0.11 * (macs / 15e6) ** -0.5 + 0.004 * se_stages + 0.003 * big_kernels + noise
        return {"accuracy": min(0.99, max(0.10, accuracy)), "macs": macs, "params": params}


class KnownAnswerEvaluator:
    """A toy problem with a known best answer, to check that a search method learns at all.

    ``accuracy`` is the fraction of stages whose options match ``favour`` (by default
    kernel 5 and expand 6 everywhere); MACs are reported as a constant, so any reward is
    proportional to that fraction. No network is built.
    """

    name = "known-answer"
    real = False

    def __init__(self, favour: dict | None = None):
        self.favour = dict(favour or {"kernel": 5, "expand": 6})
        unknown = set(self.favour) - {"kernel", "expand", "layers", "se"}
        if unknown:
            raise ValueError(f"favour names unknown decisions {sorted(unknown)}; use kernel, expand, layers, se")

    def signature(self) -> dict:
        return {"name": self.name, "favour": self.favour}

    def matches(self, stage: StageSpec) -> float:
        values = {"kernel": stage.kernel_size, "expand": stage.expand_ratio, "layers": stage.repeats, "se": stage.se_ratio > 0}
        return sum(values[name] == value for name, value in self.favour.items()) / len(self.favour)

    def __call__(self, config: EfficientNetConfig) -> dict:
        accuracy = sum(self.matches(stage) for stage in config.stages) / len(config.stages)
        return {"accuracy": accuracy, "macs": DEFAULT_TARGET_MACS, "params": 0}

    def is_best(self, config: EfficientNetConfig) -> bool:
        return all(self.matches(stage) == 1.0 for stage in config.stages)


class TrainEvaluator:
    """A real (short) evaluation: train the child on a stratified CIFAR-10 subset, score it.

    The score is the accuracy on a held-out *validation* split of the training images
    (``val_per_class`` per class, disjoint from the ``per_class`` training images), as
    MnasNet held out 50K ImageNet training images: the test set stays untouched by the
    search. Every child gets the same images, seed and recipe (``effnet_lab.train``), so
    differences come from the architectures, and from training noise, which short runs
    have plenty of: read differences of a point or two as ties.
    """

    name = "train"
    real = True

    def __init__(self, per_class: int = 1000, val_per_class: int = 500, epochs: int = 5, batch_size: int = 256,
                 lr: float | None = None, seed: int = 0, device: str | None = None, data: str | None = None):
        self.per_class = check_int("per_class", per_class, minimum=1)
        self.val_per_class = check_int("val_per_class", val_per_class, minimum=1)
        self.epochs = check_int("epochs", epochs, minimum=1)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        if self.batch_size > 10 * self.per_class:
            raise ValueError(f"batch_size ({batch_size}) is larger than the {10 * self.per_class} training images")
        self.lr = None if lr is None else check_number("lr", lr, exclusive_minimum=0.0)
        self.seed = check_int("seed", seed, minimum=0)
        self.device = device
        self.data_source = None if data is None else os.fspath(data)
        self._data = None

    @classmethod
    def quick(cls, **overrides) -> "TrainEvaluator":
        """Tiny settings for a CPU: seconds per child, and accuracies barely above chance."""
        settings = dict(per_class=20, val_per_class=10, epochs=1, batch_size=50)
        settings.update(overrides)
        return cls(**settings)

    def signature(self) -> dict:
        return {"name": self.name, "per_class": self.per_class, "val_per_class": self.val_per_class,
                "epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr, "seed": self.seed,
                "data": self.data_source}

    def data(self):
        """The training subset and the validation split (as the 'test' split), loaded once."""
        if self._data is None:
            from .data import load_cifar

            self._data = validation_split(load_cifar("cifar10", self.data_source, progress=False),
                                          self.per_class, self.val_per_class, self.seed)
        return self._data

    def __call__(self, config: EfficientNetConfig) -> dict:
        from .train import TrainConfig, train

        macs, params = measure(config)
        data = self.data()
        recipe = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                             warmup_epochs=min(1.0, self.epochs / 4), seed=self.seed, device=self.device)
        record = train(build(config), recipe, data=data, progress=False)
        return {"accuracy": record["test_accuracy"], "macs": macs, "params": params,
                "train_seconds": record["train_seconds"], "device": record["device"], "data_source": record["data_source"]}


def validation_split(data, per_class: int, val_per_class: int, seed: int = 0):
    """``per_class`` training images and ``val_per_class`` *other* training images per class,
    the second set standing in for the test split (the search never sees the test set)."""
    from dataclasses import replace

    labels = data.train_labels
    generator = torch.Generator().manual_seed(seed)
    train_index, val_index = [], []
    for label in range(data.num_classes):
        members = torch.nonzero(labels == label).flatten()
        if len(members) < per_class + val_per_class:
            raise ValueError(f"per_class + val_per_class ({per_class + val_per_class}) is more than the "
                             f"{len(members)} training images of class {data.classes[label]!r}")
        members = members[torch.randperm(len(members), generator=generator)]
        train_index.append(members[:per_class])
        val_index.append(members[per_class:per_class + val_per_class])
    train_index, val_index = torch.cat(train_index).sort().values, torch.cat(val_index).sort().values
    return replace(data, train_images=data.train_images[train_index], train_labels=labels[train_index],
                   test_images=data.train_images[val_index], test_labels=labels[val_index],
                   source=f"{data.source} (validation split of the training images)")


EVALUATORS = ("proxy", "train")


class EvaluationCache:
    """Evaluations by architecture, optionally kept in a JSON-lines file (shared by runs).

    A line is reused only by an evaluator with the same signature. ``hits`` and ``misses``
    count what the cache saved.
    """

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        self.entries: dict[tuple[str, str], dict] = {}
        self.hits = self.misses = 0
        if self.path is not None and self.path.exists():
            for line in read_jsonl(self.path):
                self.entries[(line["evaluator"], line["arch_key"])] = line["evaluation"]

    @staticmethod
    def _signature(evaluator) -> str:
        return json.dumps(evaluator.signature(), sort_keys=True)

    def evaluate(self, evaluator, config: EfficientNetConfig) -> tuple[dict, bool]:
        """(evaluation, whether it came from the cache)."""
        key = (self._signature(evaluator), arch_key(config))
        if key in self.entries:
            self.hits += 1
            return self.entries[key], True
        self.misses += 1
        start = time.perf_counter()
        evaluation = dict(evaluator(config))
        evaluation.setdefault("eval_seconds", time.perf_counter() - start)
        for name in ("accuracy", "macs", "params"):
            if name not in evaluation:
                raise ValueError(f"the evaluator {evaluator.name!r} returned no {name!r}")
        self.entries[key] = evaluation
        if self.path is not None:
            append_jsonl(self.path, {"evaluator": key[0], "arch_key": key[1], "evaluation": evaluation})
        return evaluation, False


# --- 5. the search: log, checkpoint, resume ------------------------------------------------


def read_jsonl(path: str | Path, repair: bool = False) -> list[dict]:
    """The records of a JSON-lines file. A last line cut short by a crash is ignored
    (and, with ``repair``, removed from the file so that the next append starts clean)."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text()
    complete, _, partial = text.rpartition("\n")
    if partial and repair:
        with open(path, "r+") as f:
            f.truncate(len(complete) + 1 if complete else 0)
    lines = complete.split("\n") if complete else []
    return [json.loads(line) for line in lines if line.strip()]


def append_jsonl(path: str | Path, record: dict) -> None:
    """Append one record as one line, flushed to disk before returning."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _provenance(evaluator, command: list[str] | None = None) -> dict:
    from . import __version__
    from .settings import data_source, default_device, device_name, git_commit

    return {
        "command": " ".join(command) if command else None,
        "device": device_name(default_device()) if getattr(evaluator, "real", False) else "cpu",
        "data_source": (getattr(evaluator, "data_source", None) or data_source()) if getattr(evaluator, "real", False) else None,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "effnet_lab_version": __version__,
        "torch": torch.__version__,
    }


class Search:
    """One search: a policy proposes, the evaluator scores, the reward teaches the policy.

    With ``out``, every sampled child is appended to ``out/<policy>.jsonl`` and the
    policy's state is saved to ``out/<policy>.pt`` after every step; a new ``Search`` on the
    same folder continues from there (settings must match). Evaluations go to
    ``out/evaluations.jsonl``, shared by the policies searching in that folder.

    The budget is counted in samples: each policy gets the same number of proposals. A
    proposal of a child seen before costs no training (the cache) but uses up a sample.
    """

    def __init__(self, space: SearchSpace | None = None, evaluator=None, policy: str = "controller", *,
                 reward: Reward = Reward(), seed: int = 0, controller: ControllerSettings = ControllerSettings(),
                 out: str | Path | None = None, cache: EvaluationCache | None = None, verbose: bool = True,
                 command: Sequence[str] | None = None):
        self.space = space if space is not None else SearchSpace()
        if not isinstance(self.space, SearchSpace):
            raise TypeError(f"space must be a SearchSpace, got {type(self.space).__name__}")
        self.evaluator = evaluator if evaluator is not None else ProxyEvaluator()
        if not isinstance(reward, Reward):
            raise TypeError(f"reward must be a Reward, got {type(reward).__name__}")
        self.reward = reward
        self.seed = check_int("seed", seed)
        self.policy = make_policy(policy, self.space, self.seed, controller)
        self.settings = {
            "policy": policy, "seed": self.seed, "space": self.space.to_dict(), "reward": asdict(reward),
            "controller": asdict(controller) if policy == "controller" else None,
            "evaluator": self.evaluator.signature(),
        }
        self.out = Path(out) if out is not None else None
        self.command = list(command) if command else None
        self.records: list[dict] = []
        self._replay: list[dict] = []  # logged steps whose policy update the checkpoint lacks
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
            self.cache = cache if cache is not None else EvaluationCache(self.out / "evaluations.jsonl")
            self._resume()
        else:
            self.cache = cache if cache is not None else EvaluationCache()
        if verbose and not getattr(self.evaluator, "real", False):
            print(PROXY_WARNING if isinstance(self.evaluator, ProxyEvaluator) else
                  f"{self.evaluator.name} evaluator: a synthetic score, NOT a real evaluation.")

    # files
    @property
    def log_path(self) -> Path:
        return self.out / f"{self.policy.name}.jsonl"

    @property
    def checkpoint_path(self) -> Path:
        return self.out / f"{self.policy.name}.pt"

    @property
    def settings_path(self) -> Path:
        return self.out / f"{self.policy.name}.json"

    def _resume(self) -> None:
        if self.settings_path.exists():
            saved = json.loads(self.settings_path.read_text())
            differing = sorted(k for k in self.settings if saved.get("settings", {}).get(k) != self.settings[k])
            if differing:
                raise ValueError(
                    f"{self.out} holds a {self.policy.name} search with other settings ({', '.join(differing)}); "
                    "use another --out folder, or the same settings to continue it"
                )
        else:
            write_json(self.settings_path, {"settings": self.settings, "provenance": _provenance(self.evaluator, self.command)})
        logged = read_jsonl(self.log_path, repair=True)
        done = 0
        if self.checkpoint_path.exists():
            state = torch.load(self.checkpoint_path, weights_only=True)
            self.policy.load_state_dict(state["policy"])
            done = state["step"]
        # The log is written before the checkpoint, so it may be one step ahead: that step
        # is replayed (same proposal, logged evaluation) without logging it again.
        if not done <= len(logged) <= done + 1:
            raise ValueError(
                f"{self.log_path} holds {len(logged)} steps but the checkpoint {self.checkpoint_path} is at step {done}: "
                "they do not belong together; start in a new folder"
            )
        self.records = logged[:done]
        self._replay = logged[done:]

    @property
    def step_count(self) -> int:
        return len(self.records)

    def step(self) -> dict:
        """Propose one child, evaluate it (or reuse its evaluation), learn from its reward."""
        step = self.step_count
        choices = self.policy.propose()
        config = self.space.decode(choices)
        if self._replay:
            record = self._replay.pop(0)
            if tuple(record["choices"]) != choices:
                raise RuntimeError(f"{self.log_path}: step {step} does not match the checkpoint; start in a new folder")
            self.policy.update(choices, record["reward"])
        else:
            evaluation, cached = self.cache.evaluate(self.evaluator, config)
            reward = self.reward(evaluation["accuracy"], evaluation["macs"])
            update = self.policy.update(choices, reward)
            record = {
                "step": step, "policy": self.policy.name, "arch": self.space.describe(choices), "choices": list(choices),
                "stages": self.space.stages(choices),
                "accuracy": evaluation["accuracy"], "macs": evaluation["macs"], "params": evaluation["params"],
                "reward": reward, "evaluator": self.evaluator.name, "real_evaluation": bool(getattr(self.evaluator, "real", False)),
                "cached": cached, "eval_seconds": evaluation.get("eval_seconds"),
                "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), **update,
            }
            # What else the evaluator reported (a real one: training time, device, data copy).
            record.update({k: v for k, v in evaluation.items() if k not in record})
            if self.out is not None:
                append_jsonl(self.log_path, record)
        self.records.append(record)
        if self.out is not None:
            save_torch(self.checkpoint_path, {"step": self.step_count, "policy": self.policy.state_dict()})
        return record

    def run(self, steps: int, *, deadline: float | None = None, progress: bool = True) -> list[dict]:
        """Search until ``steps`` samples have been taken in total (a rerun continues)."""
        run_round_robin([self], steps, deadline=deadline, progress=progress)
        return self.records

    def best(self) -> dict | None:
        return max(self.records, key=lambda r: r["reward"], default=None)


def run_round_robin(searches: Sequence[Search], steps: int, *, deadline: float | None = None, progress: bool = True) -> bool:
    """Step several searches in turn (one sample each) until each has ``steps`` samples.

    With ``deadline`` (a ``time.monotonic()`` value) no new step starts after it: the
    searches stop cleanly and a rerun continues them. Returns True when all finished.
    """
    steps = check_int("steps (the search budget)", steps, minimum=1)
    remaining = sum(max(0, steps - s.step_count) for s in searches)
    bar = _progress(remaining, progress, "NAS: " + " + ".join(s.policy.name for s in searches))
    try:
        while any(s.step_count < steps for s in searches):
            for search in searches:
                if search.step_count >= steps:
                    continue
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                record = search.step()
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix_str(f"{record['policy']} reward {record['reward']:.3f}", refresh=False)
    finally:
        if bar is not None:
            bar.close()
    return True


def _progress(total: int, enabled: bool, description: str):
    if not enabled or total == 0:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=description)


def read_log(path: str | Path) -> list[dict]:
    """The records of a search log (``out/<policy>.jsonl``), in step order."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no search log at {path}")
    return read_jsonl(path)


def pareto_front(records: Iterable[dict]) -> list[dict]:
    """Children that no other child beats on both accuracy (higher) and MACs (lower)."""
    unique = {r["arch"]: r for r in records}.values()
    front, best_accuracy = [], -1.0
    for record in sorted(unique, key=lambda r: (r["macs"], -r["accuracy"])):
        if record["accuracy"] > best_accuracy:
            front.append(record)
            best_accuracy = record["accuracy"]
    return front


def winners_by_w(records: Iterable[dict], ws: Iterable[float], target_macs: float = DEFAULT_TARGET_MACS) -> list[tuple[float, dict]]:
    """For each exponent w, the child with the highest reward among ``records``."""
    unique = list({r["arch"]: r for r in records}.values())
    if not unique:
        raise ValueError("records is empty: run a search first")
    return [(w, max(unique, key=lambda r: Reward(target_macs, w)(r["accuracy"], r["macs"]))) for w in ws]


def success_rate(policy: str, seeds: Iterable[int], steps: int, space: SearchSpace | None = None,
                 evaluator: KnownAnswerEvaluator | None = None, controller: ControllerSettings = ControllerSettings()) -> list[bool]:
    """On a known-answer problem: per seed, did the policy sample the best child within ``steps``?"""
    space = space if space is not None else SearchSpace()
    evaluator = evaluator if evaluator is not None else KnownAnswerEvaluator()
    outcomes = []
    for seed in seeds:
        search = Search(space, evaluator, policy, seed=seed, controller=controller, reward=Reward(w=0.0), verbose=False)
        found = False
        for _ in range(steps):
            record = search.step()
            if evaluator.is_best(space.decode(record["choices"])):
                found = True
                break
        outcomes.append(found)
    return outcomes


# --- the command line: python -m effnet_lab nas ... -------------------------------------------


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "nas",
        help="a MnasNet-style architecture search on CIFAR (lesson 01)",
        description="Search CIFAR architectures with an LSTM controller (REINFORCE) or at random, rewarding "
        "ACC * (MACs/T)^w. Rerun the same command to continue an interrupted search.",
    )
    parser.add_argument("--steps", type=int, default=None, help="samples per policy (default 100; 30 in quick mode)")
    parser.add_argument("--evaluator", choices=EVALUATORS, default="proxy",
                        help="proxy: a made-up formula, seconds (NOT a real evaluation); train: short real training")
    parser.add_argument("--policy", choices=POLICIES + ("both",), default="controller",
                        help="controller, random, or both (in turns, same budget each)")
    parser.add_argument("--out", default=None, help="folder for the logs and checkpoints (default <results>/nas/<evaluator>-seed<S>)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="quick mode (also EFFNET_LAB_QUICK=1)")
    parser.add_argument("--target-macs", type=float, default=DEFAULT_TARGET_MACS, help="T of the reward, in MACs")
    parser.add_argument("--w", type=float, default=-0.07, help="the reward's exponent w (default -0.07)")
    parser.add_argument("--time-limit", type=float, default=None,
                        help="seconds; no new child starts after it (rerun to continue)")
    parser.add_argument("--per-class", type=int, default=None, help="train evaluator: training images per class")
    parser.add_argument("--val-per-class", type=int, default=None,
                        help="train evaluator: held-out training images per class that score a child")
    parser.add_argument("--epochs", type=int, default=None, help="train evaluator: epochs per child")
    parser.add_argument("--data", default=None, help="train evaluator: dataset location (else EFFNET_LAB_DATA)")
    parser.add_argument("--device", default=None, help="train evaluator: cpu, cuda (default: the GPU when there is one)")
    parser.add_argument("--no-plots", action="store_true", help="do not write figures into --out")
    parser.set_defaults(run=main)
    return parser


def make_evaluator(name: str, quick: bool = False, seed: int = 0, **overrides):
    """The evaluator called ``name`` ('proxy' or 'train'), with quick-mode settings if asked."""
    check_choice("evaluator", name, EVALUATORS)
    if name == "proxy":
        return ProxyEvaluator()
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return TrainEvaluator.quick(seed=seed, **overrides) if quick else TrainEvaluator(seed=seed, **overrides)


def main(args: argparse.Namespace) -> int:
    from .settings import quick_mode, results_dir

    start = time.monotonic()
    quick = quick_mode(True if args.quick else None)
    steps = args.steps if args.steps is not None else (30 if quick else 100)
    steps = check_int("--steps (the search budget)", steps, minimum=1)
    if args.time_limit is not None:
        check_number("--time-limit", args.time_limit, exclusive_minimum=0.0)
    evaluator = make_evaluator(args.evaluator, quick, args.seed, per_class=args.per_class,
                               val_per_class=args.val_per_class, epochs=args.epochs, data=args.data, device=args.device)
    reward = Reward(args.target_macs, args.w)
    out = Path(args.out) if args.out else results_dir() / "nas" / f"{args.evaluator}-seed{args.seed}"
    out.mkdir(parents=True, exist_ok=True)
    # One cache for the policies of this folder: a child one of them evaluated is not trained again.
    cache = EvaluationCache(out / "evaluations.jsonl")
    policies = POLICIES if args.policy == "both" else (args.policy,)
    command = getattr(args, "command_line", None)
    searches = [Search(evaluator=evaluator, policy=p, reward=reward, seed=args.seed, out=out, cache=cache,
                       verbose=False, command=command) for p in policies]
    if not evaluator.real:
        print(PROXY_WARNING)
    finished = run_round_robin(searches, steps, deadline=start + args.time_limit if args.time_limit else None)
    for search in searches:
        best = search.best()
        distinct = len({r["arch"] for r in search.records})
        print(f"{search.policy.name}: {search.step_count}/{steps} samples, {distinct} distinct children; "
              f"best reward {best['reward']:.4f} (accuracy {best['accuracy']:.3f}, {best['macs'] / 1e6:.1f}M MACs): {best['arch']}"
              if best else f"{search.policy.name}: no samples yet")
    print(f"{time.monotonic() - start:.1f} s this run; log in {out}"
          + ("" if finished else "; stopped at the time limit: rerun the same command to continue"))
    if not args.no_plots and all(s.records for s in searches):
        paths = save_figures({s.policy.name: s.records for s in searches}, out, reward)
        print("figures: " + ", ".join(str(p) for p in paths))
    write_readme(out)
    return 0


def write_readme(out: str | Path) -> Path:
    """A README.md in a search folder: how its logs were made and what they hold (rewritten
    after every run, from the files themselves)."""
    out = Path(out)
    lines = [f"# Architecture search: {out.name}", "",
             "Written by `python -m effnet_lab nas` (effnet_lab/nas.py, lesson 01); rerun the command to continue.", ""]
    for policy in POLICIES:
        if not (out / f"{policy}.json").exists():
            continue
        saved = json.loads((out / f"{policy}.json").read_text())
        records = read_jsonl(out / f"{policy}.jsonl")
        evaluator = saved["settings"]["evaluator"]
        provenance = saved["provenance"]
        real = bool(records and records[0].get("real_evaluation"))
        lines += [f"## {policy}", "",
                  f"- samples: {len(records)}, distinct children: {len({r['arch'] for r in records})}",
                  f"- evaluator: {json.dumps(evaluator)}"
                  + ("" if real else " (PROXY: a made-up formula, NOT a real evaluation)"),
                  f"- reward: {json.dumps(saved['settings']['reward'])}",
                  f"- seed: {saved['settings']['seed']}",
                  f"- started: {provenance['date']} by `{provenance['command'] or 'the Python API'}`",
                  f"- device: {sorted({r['device'] for r in records if r.get('device')}) or provenance['device']}",
                  f"- data: {sorted({r['data_source'] for r in records if r.get('data_source')}) or provenance['data_source']}",
                  f"- commit: {provenance['git_commit']}, effnet_lab {provenance['effnet_lab_version']}, torch {provenance['torch']}"]
        if records:
            best = max(records, key=lambda r: r["reward"])
            lines.append(f"- best reward {best['reward']:.4f} at step {best['step']}: {best['arch']} "
                         f"(accuracy {best['accuracy']:.4f}, {best['macs'] / 1e6:.1f}M MACs, {best['params']:,} parameters)")
            lines.append(f"- last sample: {records[-1]['time']}")
        lines.append("")
    lines += ["Files: `<policy>.jsonl` (one line per sampled child), `<policy>.pt` (the policy's checkpoint), "
              "`<policy>.json` (settings and provenance), `evaluations.jsonl` (the cache of evaluated children), "
              "`*.png` (figures).", ""]
    return write_text(out / "README.md", "\n".join(lines))


# --- figures for lesson 01 -----------------------------------------------------------------

POLICY_COLORS = {"controller": "tab:blue", "random": "tab:orange"}


def provenance_note(records: Sequence[dict]) -> str:
    """One line saying how the plotted numbers were made."""
    if not records:
        return ""
    evaluators = sorted({r["evaluator"] for r in records})
    real = all(r.get("real_evaluation") for r in records)
    kind = "real short training on CIFAR-10" if real else "PROXY accuracies (made-up formula, not a real evaluation)"
    dates = sorted(r["time"][:10] for r in records if r.get("time"))
    return f"{len(records)} samples, evaluator {'/'.join(evaluators)}: {kind}" + (f"; {dates[-1]}" if dates else "")


def plot_reward_surface(ws: Sequence[float] = (0.0, -0.07, -0.3), target_macs: float = DEFAULT_TARGET_MACS,
                        macs_range: tuple[float, float] = (2e6, 2e8), accuracy_range: tuple[float, float] = (0.5, 0.95)):
    """The reward over (MACs, accuracy) for a few w: one panel per w, with iso-reward lines."""
    import matplotlib.pyplot as plt
    import numpy as np

    macs = np.geomspace(*macs_range, 200)
    accuracy = np.linspace(*accuracy_range, 200)
    M, A = np.meshgrid(macs, accuracy)
    fig, axes = plt.subplots(1, len(ws), figsize=(4.6 * len(ws), 4), sharey=True, squeeze=False)
    for ax, w in zip(axes[0], ws):
        R = A * (M / target_macs) ** w
        filled = ax.contourf(M / 1e6, A * 100, R, levels=20, cmap="viridis")
        lines = ax.contour(M / 1e6, A * 100, R, levels=8, colors="white", linewidths=0.7)
        ax.clabel(lines, fmt="%.2f", fontsize=8)
        ax.axvline(target_macs / 1e6, color="red", linestyle="--", linewidth=1, label=f"T = {target_macs / 1e6:g}M")
        ax.set_xscale("log")
        plain_log_ticks(ax.xaxis)
        ax.set_title(f"w = {w:g}")
        ax.set_xlabel("MACs (millions, log scale)")
        fig.colorbar(filled, ax=ax, label="reward")
    axes[0][0].set_ylabel("accuracy (%)")
    axes[0][0].legend(loc="lower right", fontsize=8)
    fig.suptitle("MnasNet reward ACC x (MACs/T)^w: the lines are equally rewarded children")
    fig.tight_layout()
    return fig


def plot_winners_by_w(records: Sequence[dict], ws: Sequence[float] | None = None, target_macs: float = DEFAULT_TARGET_MACS):
    """Which sampled child wins as w changes: its MACs and accuracy against w."""
    import matplotlib.pyplot as plt
    import numpy as np

    ws = list(ws) if ws is not None else list(np.round(np.linspace(-0.3, 0.0, 61), 3))
    winners = winners_by_w(records, ws, target_macs)
    fig, ax = plt.subplots(figsize=(8, 4.2))
    ax.step(ws, [r["macs"] / 1e6 for _, r in winners], where="mid", color="tab:blue", label="winner's MACs")
    ax.set_yscale("log")
    plain_log_ticks(ax.yaxis)
    ax.set_xlabel("w (the reward's cost exponent)")
    ax.set_ylabel("winner's MACs (millions, log scale)", color="tab:blue")
    twin = ax.twinx()
    twin.step(ws, [r["accuracy"] * 100 for _, r in winners], where="mid", color="tab:green", label="winner's accuracy")
    twin.set_ylabel("winner's accuracy (%)", color="tab:green")
    ax.axvline(-0.07, color="gray", linestyle=":", linewidth=1)
    ax.text(-0.07, ax.get_ylim()[1], " w = -0.07 (B0)", va="top", fontsize=8, color="gray")
    ax.set_title("The more negative w, the smaller the winning child")
    fig.text(0.01, 0.005, provenance_note(records), fontsize=7, color="gray")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def plot_search_progress(logs: dict[str, Sequence[dict]], window: int = 10):
    """Reward per sample (dots), its moving average and the best so far, per policy."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(8, 4.2))
    for policy, records in logs.items():
        color = POLICY_COLORS.get(policy, None)
        steps = np.array([r["step"] for r in records])
        rewards = np.array([r["reward"] for r in records])
        ax.scatter(steps, rewards, s=8, alpha=0.35, color=color)
        if len(rewards) >= window:
            smooth = np.convolve(rewards, np.ones(window) / window, mode="valid")
            ax.plot(steps[window - 1:], smooth, color=color, label=f"{policy}: mean of last {window}")
        ax.plot(steps, np.maximum.accumulate(rewards), color=color, linestyle="--", label=f"{policy}: best so far")
    ax.set_xlabel("sample (controller step)")
    ax.set_ylabel("reward  ACC x (MACs/T)^w")
    ax.set_title("Reward of every sample: the controller against random search, same budget")
    ax.legend(fontsize=8)
    fig.text(0.01, 0.005, provenance_note([r for rs in logs.values() for r in rs]), fontsize=7, color="gray")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def plot_pareto(logs: dict[str, Sequence[dict]]):
    """Accuracy against MACs of every sampled child, with the Pareto front of them all."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.6))
    everything = [r for records in logs.values() for r in records]
    for policy, records in logs.items():
        unique = list({r["arch"]: r for r in records}.values())
        ax.scatter([r["macs"] / 1e6 for r in unique], [r["accuracy"] * 100 for r in unique], s=16, alpha=0.7,
                   color=POLICY_COLORS.get(policy), zorder=2, label=f"{policy} ({len(unique)} distinct children)")
    front = pareto_front(everything)
    # Under the dots (zorder), so the colour still says which policy found each front child.
    ax.plot([r["macs"] / 1e6 for r in front], [r["accuracy"] * 100 for r in front], color="black", linewidth=1.2,
            drawstyle="steps-post", zorder=1, label=f"Pareto front ({len(front)} children)")
    ax.set_xscale("log")
    plain_log_ticks(ax.xaxis)
    ax.set_xlabel("MACs at 32x32 (millions, log scale)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("Every sampled child: accuracy against cost")
    ax.legend(fontsize=8)
    fig.text(0.01, 0.005, provenance_note(everything), fontsize=7, color="gray")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def save_figures(logs: dict[str, Sequence[dict]], out: str | Path, reward: Reward = Reward()) -> list[Path]:
    """Write the search's figures (progress, Pareto front, winners by w) as PNGs into ``out``."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")  # a command line run: no display
    import matplotlib.pyplot as plt

    out = Path(out)
    everything = [r for records in logs.values() for r in records]
    figures = {
        "progress.png": plot_search_progress(logs),
        "pareto.png": plot_pareto(logs),
        "winners_by_w.png": plot_winners_by_w(everything, target_macs=reward.target_macs),
    }
    paths = []
    for name, fig in figures.items():
        atomic_write(out / name, lambda f: fig.savefig(f, format="png", dpi=120))
        plt.close(fig)
        paths.append(out / name)
    return paths
