"""Every training recipe of effnet-lab, in one table (lessons 05 and 07).

A recipe is a set of ``TrainConfig`` fields: the optimizer, the learning rate and its
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

from dataclasses import dataclass

from . import settings


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
           quick=dict(epochs=2, batch_size=32, lr=0.05, warmup_epochs=0.5, label_smoothing=0.0,
                      subset_per_class=200, test_per_class=50)),
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
    Recipe("nas-child", "each child of the architecture search, trained briefly on a subset",
           full=dict(epochs=5, batch_size=256, warmup_epochs=1.0),
           quick=dict(epochs=1, batch_size=50, warmup_epochs=0.25)),
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


def config(name: str, quick: bool | None = None, **overrides):
    """Recipe ``name`` as a ``TrainConfig`` (bad overrides fail here with a clear message)."""
    from .train import TrainConfig

    return TrainConfig(**fields(name, quick, **overrides))


def table(quick: bool = False) -> list[dict]:
    """Every recipe as a row (for a lesson's table): its name, purpose and fields."""
    return [{"recipe": r.name, "purpose": r.purpose, **fields(r.name, quick)} for r in RECIPES.values()]
