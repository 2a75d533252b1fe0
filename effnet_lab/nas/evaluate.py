"""Scoring a child network (lesson 01): what the search optimises, in three strengths.

An evaluator takes a child's configuration and returns a dict with at least ``accuracy``
(a fraction), ``macs`` and ``params``; ``signature()`` says what the numbers mean (cached
results are reused only under the same signature), and ``real`` whether they are a real
measurement.

- ``KnownAnswerEvaluator``: a toy problem with a known best child, to check that a search
  method learns at all.
- ``ProxyEvaluator``: a made-up formula of the architecture, so the whole loop runs on a CPU
  in seconds (it is *not* an evaluation, and says so).
- ``TrainEvaluator``: real short training on a CIFAR-10 subset (the "nas-child" recipe),
  scored on held-out training images.

``EvaluationCache`` keeps evaluations by architecture, so no child is trained twice.
"""

from __future__ import annotations

import json
import time
import zlib
from dataclasses import replace
from pathlib import Path

import torch

from ..checks import check_choice, check_int
from ..files import append_jsonl, read_jsonl
from ..model import EfficientNetConfig, StageSpec, build
from .space import DEFAULT_TARGET_MACS, arch_key, measure

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
    search. Every child gets the same images, seed and recipe, so differences come from
    the architectures, and from training noise, which short runs have plenty of: read
    differences of a point or two as ties.

    The recipe is ``effnet_lab.recipes``' "nas-child" (its quick sizes with ``quick=True``,
    or ``TrainEvaluator.quick()``); the arguments given override it, ``per_class`` and
    ``val_per_class`` standing for the recipe's ``subset_per_class`` and ``test_per_class``.
    """

    name = "train"
    real = True

    def __init__(self, per_class: int | None = None, val_per_class: int | None = None, epochs: int | None = None,
                 batch_size: int | None = None, lr: float | None = None, seed: int = 0, device: str | None = None,
                 data: str | None = None, *, quick: bool = False):
        from .. import recipes

        for name, value in (("per_class", per_class), ("val_per_class", val_per_class)):
            if value is not None:
                check_int(name, value, minimum=1)
        given = dict(subset_per_class=per_class, test_per_class=val_per_class, epochs=epochs, batch_size=batch_size,
                     lr=lr, device=device, data=data)
        recipe = recipes.config("nas-child", quick, seed=seed, **{k: v for k, v in given.items() if v is not None})
        # validation_split draws both sets from the training images; training then uses them whole.
        self.per_class, self.val_per_class = recipe.subset_per_class, recipe.test_per_class
        if recipe.batch_size > 10 * self.per_class:
            raise ValueError(f"batch_size ({recipe.batch_size}) is larger than the {10 * self.per_class} training images")
        # A child warms up for a quarter of its epochs, at most the recipe's warm-up.
        self.recipe = replace(recipe, subset_per_class=None, test_per_class=None,
                              warmup_epochs=min(recipe.warmup_epochs, recipe.epochs / 4))
        self.epochs, self.batch_size, self.seed = recipe.epochs, recipe.batch_size, recipe.seed
        self.lr = lr  # None: the recipe's learning rate
        self.device, self.data_source = recipe.device, recipe.data
        self._data = None

    @classmethod
    def quick(cls, **overrides) -> "TrainEvaluator":
        """The recipe's quick sizes, for a CPU: seconds per child, accuracies barely above chance."""
        return cls(quick=True, **overrides)

    def signature(self) -> dict:
        return {"name": self.name, "per_class": self.per_class, "val_per_class": self.val_per_class,
                "epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr, "seed": self.seed,
                "data": self.data_source}

    def data(self):
        """The training subset and the validation split (as the 'test' split), loaded once."""
        if self._data is None:
            from ..data import load_cifar

            self._data = validation_split(load_cifar("cifar10", self.data_source, progress=False),
                                          self.per_class, self.val_per_class, self.seed)
        return self._data

    def __call__(self, config: EfficientNetConfig) -> dict:
        from ..train import train

        macs, params = measure(config)
        record = train(build(config), self.recipe, data=self.data(), progress=False)
        return {"accuracy": record["test_accuracy"], "macs": macs, "params": params,
                "train_seconds": record["train_seconds"], "device": record["device"], "data_source": record["data_source"]}


def validation_split(data, per_class: int, val_per_class: int, seed: int = 0):
    """``per_class`` training images and ``val_per_class`` *other* training images per class,
    the second set standing in for the test split (the search never sees the test set)."""
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


def make_evaluator(name: str, quick: bool = False, seed: int = 0, **overrides):
    """The evaluator called ``name`` ('proxy' or 'train'), with quick-mode settings if asked."""
    check_choice("evaluator", name, EVALUATORS)
    if name == "proxy":
        return ProxyEvaluator()
    return TrainEvaluator(seed=seed, quick=quick, **overrides)  # an override of None keeps the recipe's value
