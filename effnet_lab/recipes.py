"""Every training recipe of effnet-lab, in one table (lessons 05 and 07).

``TrainConfig`` holds everything that decides a training run's result (the model aside); a
recipe is a named set of its fields: the optimizer, the learning rate and its
schedule, the epochs, the batch, the regularisation, the input size. Each has two sizes:
``full`` (a GPU) and what quick mode changes (``quick``: a laptop CPU, minutes; its
accuracies illustrate, they are not results). Everything else in the package asks for a
recipe by name, so the numbers live here and nowhere else:

    >>> from effnet_lab import recipes
    >>> recipes.config("comparison", quick=True).epochs
    2

| name | used by |
|---|---|
| ``train`` | ``python -m effnet_lab train`` and ``train.default_config`` |
| ``comparison`` | the scaling experiments of lesson 05 (``python -m effnet_lab sweep``) |
| ``time-to-accuracy`` | ``benchmarks/time_to_accuracy.py``: B0 to 90% as fast as possible |
| ``fine-tuning`` | lesson 07: ImageNet-trained Lite0 adapted to CIFAR |
| ``from-scratch`` | lesson 07: the same network from random weights, for comparison |
| ``nas-child`` | lesson 01: each child network of the architecture search, trained briefly |

Unset fields keep ``TrainConfig``'s defaults (SGD with Nesterov momentum 0.9, learning rate
0.1 per 256 images, weight decay 5e-4 on weights only, a linear warm-up then a cosine to
zero, label smoothing 0.1, bf16 autocast on GPUs that have it, channels_last).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import torch

from . import settings
from .checks import check_choice, check_int, check_number
from .data import NUM_CLASSES

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "onecycle")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run's result (the model aside)."""

    dataset: str = "cifar10"
    data: str | None = None  # a source for load_cifar; None: EFFNET_LAB_DATA or found automatically
    epochs: int = 30
    batch_size: int = 256
    lr: float | None = None  # None: 0.1 x batch/256 for SGD, 2e-3 for AdamW
    optimizer: str = "sgd"
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float | None = None  # None: 5e-4 for SGD, 0.05 for AdamW
    schedule: str = "cosine"
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    resolution: int = 32
    subset_per_class: int | None = None  # training images per class; None: all
    test_per_class: int | None = None  # test images per class; None: the full test set
    augment: bool = True
    seed: int = 0
    ema: bool = False
    ema_decay: float = 0.999
    amp: bool = True  # mixed precision on a GPU (optim.choose_precision); False: fp32 everywhere
    precision: str = "auto"  # auto: bf16 where the GPU has it, else fp16 with a scaler; or force one
    channels_last: bool = True
    compile: bool = False
    eval_batch_size: int = 1024
    device: str | None = None  # None: the GPU when there is one
    quick: bool = False  # a quick-mode run: a label for the record

    def __post_init__(self) -> None:
        put = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)
        check_choice("dataset", self.dataset, NUM_CLASSES)
        put("epochs", check_int("epochs", self.epochs, minimum=1))
        put("batch_size", check_int("batch_size", self.batch_size, minimum=1))
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("precision", self.precision, PRECISIONS)
        if self.lr is None:
            put("lr", 0.1 * self.batch_size / 256 if self.optimizer == "sgd" else 2e-3)
        put("lr", check_number("lr", self.lr, exclusive_minimum=0.0))
        if self.weight_decay is None:
            put("weight_decay", 5e-4 if self.optimizer == "sgd" else 0.05)
        put("weight_decay", check_number("weight_decay", self.weight_decay, minimum=0.0))
        put("momentum", _below_one("momentum", self.momentum))
        put("warmup_epochs", check_number("warmup_epochs", self.warmup_epochs, minimum=0.0))
        if self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) cannot exceed epochs ({self.epochs})")
        put("label_smoothing", _below_one("label_smoothing", self.label_smoothing))
        put("resolution", check_int("resolution", self.resolution, minimum=1))
        for name in ("subset_per_class", "test_per_class"):
            if getattr(self, name) is not None:
                put(name, check_int(name, getattr(self, name), minimum=1))
        put("seed", check_int("seed", self.seed, minimum=0))
        put("ema_decay", _below_one("ema_decay", self.ema_decay))
        put("eval_batch_size", check_int("eval_batch_size", self.eval_batch_size, minimum=1))
        for name in ("nesterov", "augment", "ema", "amp", "channels_last", "compile", "quick"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.data is not None:
            put("data", os.fspath(self.data))
        if self.device is not None:
            try:
                torch.device(self.device)
            except (RuntimeError, TypeError):
                raise ValueError(f"device {self.device!r} is not a device PyTorch knows (try 'cpu' or 'cuda')") from None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _below_one(name: str, value: object) -> float:
    number = check_number(name, value, minimum=0.0)
    if number >= 1.0:
        raise ValueError(f"{name} must be below 1, got {number}")
    return number




@dataclass(frozen=True)
class Recipe:
    name: str
    purpose: str
    full: dict  # TrainConfig fields at full scale
    quick: dict  # what quick mode changes


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("train", "one run of python -m effnet_lab train",
           full=dict(),
           # Chosen by measurement on CIFAR-10 (2 CPU cores): with a fixed budget of seconds, a
           # smaller network on more images, at 16 px, learns most (36-39% test accuracy in two
           # epochs, where B0 at width and depth 0.5, 32 px, 150 per class reached 20-25%).
           quick=dict(epochs=2, batch_size=32, lr=0.05, warmup_epochs=0.5, label_smoothing=0.0, resolution=16,
                      subset_per_class=600, test_per_class=200)),
    # fp32: bf16 autocast trained this recipe's baseline a few points worse on the H200
    # (results/precision-check/). 30 epochs, not 6: at 6 every model was far from converged
    # (train loss 1.4-1.6), so the table ranked how fast each shape starts learning. The pilot
    # (CANDIDATES below) checks the length and the rest against measurements.
    Recipe("comparison", "every run of the scaling comparison, every family alike",
           full=dict(epochs=30, batch_size=512, lr=0.2, warmup_epochs=2.0, label_smoothing=0.1, amp=False),
           # Quick mode, chosen by measurement on 2 CPU cores (each model of the quick comparison,
           # one seed, 500 test images, two epochs): AdamW reached 27-32% on the baseline and the
           # widest, deepest and compound phi = 2 models, where SGD at lr 0.1 left the wide one at
           # 22% and SGD at lr 0.2 the deep one at 13-16%. Two epochs, not three: lesson 05's live
           # sweep (the baseline and the four phi = 1 models) then trains in under 40 s on 2 idle
           # cores instead of 56 s; a third epoch added 2-9 points to these illustrations.
           quick=dict(epochs=2, batch_size=64, optimizer="adamw", lr=3e-3, weight_decay=0.05, warmup_epochs=0.3,
                      label_smoothing=0.0, subset_per_class=300, test_per_class=50)),
    Recipe("time-to-accuracy", "B0 from scratch to 90% test accuracy as fast as possible",
           # Fixed before any GPU run, not tuned on the test set: batch 512, peak lr 0.4 after one
           # warm-up epoch, cosine to zero, label smoothing 0.1, weight decay 5e-4, EMA of the weights.
           full=dict(batch_size=512, lr=0.4, warmup_epochs=1.0, label_smoothing=0.1, weight_decay=5e-4,
                     ema=True, ema_decay=0.999, resolution=32),
           quick=dict(batch_size=64, lr=0.05, resolution=16, subset_per_class=60, test_per_class=20)),
    # Fine-tuning starts from weights that are already good: a learning rate below the
    # from-scratch one (0.04 against 0.1 per 256 images) keeps the ImageNet features while the
    # new classifier and the batch-norm statistics adapt, a short warm-up lets the new (zero)
    # head settle before the backbone moves much, and the weight decay is light.
    Recipe("fine-tuning", "ImageNet-trained weights adapted to CIFAR at ImageNet size",
           full=dict(lr=0.04, weight_decay=5e-5, warmup_epochs=0.3, batch_size=256, resolution=224, epochs=8),
           quick=dict(epochs=2, batch_size=50, subset_per_class=100, test_per_class=20, resolution=64,
                      warmup_epochs=0.2)),
    Recipe("from-scratch", "the fine-tuned network's shape from random weights, same images and epochs",
           full=dict(batch_size=256, resolution=224, epochs=8),
           quick=dict(epochs=2, batch_size=50, subset_per_class=100, test_per_class=20, resolution=64,
                      warmup_epochs=0.2)),
    # A child trains on subset_per_class images per class and is scored on test_per_class
    # *other training images* per class (nas.TrainEvaluator's validation split: the search
    # never sees the test set). It warms up for a quarter of its epochs, at most warmup_epochs.
    Recipe("nas-child", "each child of the architecture search, trained briefly on a subset",
           full=dict(epochs=5, batch_size=256, warmup_epochs=1.0, subset_per_class=1000, test_per_class=500),
           quick=dict(epochs=1, batch_size=50, subset_per_class=20, test_per_class=10)),
)}


# Candidates for the comparison's recipe, each a change to it, measured on the baseline
# before the comparison runs (python -m effnet_lab sweep pilot): every seed at the recipe's
# length and one seed at twice the length. A field of experiments.Baseline changes the model.
CANDIDATES: dict[str, dict] = {
    "sgd": {},  # the recipe as it stands
    "sgd-zero-init": {"zero_init_last_bn": True},  # residual blocks start as the identity
    "adamw": {"optimizer": "adamw", "lr": 2e-3, "weight_decay": 0.05},
    "sgd-batch-256": {"batch_size": 256, "lr": 0.1},  # twice the steps, the same lr per image
}


def fields(name: str, quick: bool | None = None, **overrides) -> dict:
    """The TrainConfig fields of recipe ``name`` (quick mode's when it is on), then ``overrides``."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {sorted(RECIPES)}")
    recipe = RECIPES[name]
    chosen = dict(recipe.full)
    if settings.quick_mode(quick):
        chosen.update(recipe.quick, quick=True)
    chosen.update(overrides)
    return chosen


def config(name: str, quick: bool | None = None, **overrides) -> TrainConfig:
    """Recipe ``name`` as a ``TrainConfig`` (bad overrides fail here with a clear message)."""
    return TrainConfig(**fields(name, quick, **overrides))


def table(quick: bool = False) -> list[dict]:
    """Every recipe as a row (for a lesson's table): its name, purpose and fields."""
    return [{"recipe": r.name, "purpose": r.purpose, **fields(r.name, quick)} for r in RECIPES.values()]
