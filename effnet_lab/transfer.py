"""Transfer learning: three ways to put ImageNet features to work on CIFAR (lesson 07).

1. **Linear probe.** Freeze the pretrained network, compute each image's 1280 pooled
   features once, and fit only a linear classifier on them (multinomial logistic
   regression). Cheap: one forward pass per image, no backward pass at all.
2. **Fine-tuning.** Start from the pretrained weights, put a new 10-class classifier on top
   and train everything, with a small learning rate (``finetune_config``).
3. **From scratch.** The same network, randomly initialised, trained with the usual recipe
   (``scratch_config``), for the same time.

The probe lives here (``linear_probe``); fine-tuning and training from scratch are ordinary
runs of ``effnet_lab.train.train``. ``linear_probe`` returns a record in the same shape as
``train``'s (``test_accuracy``, ``accuracy_curve`` of {seconds, test_accuracy}, provenance),
so one plot shows all three against wall-clock time.
"""

from __future__ import annotations

import datetime
import os
import time

import torch
import torch.nn.functional as F
from torch import nn

from . import recipes, settings
from .checks import check_int, check_number
from .data import CifarData, DeviceLoader
from .pretrained import LITE_MEAN, LITE_STD
from .train import TrainConfig


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def extract_features(
    model: nn.Module,
    images: torch.Tensor,
    *,
    resolution: int,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """The pooled features (N, channels) of uint8 CIFAR images (N, 3, H, W), resized to ``resolution``.

    Inputs are normalised as the Lite models were trained (mean 0.5, std 0.5), the model is in
    evaluation mode (batch norm uses its ImageNet statistics), and nothing is trained. The
    model is moved to ``device`` in channels_last memory format (same weights, faster).
    """
    device = torch.device(device) if device is not None else settings.default_device()
    on_cuda = device.type == "cuda"
    loader = DeviceLoader(images, torch.zeros(len(images), dtype=torch.int64), batch_size, train=False,
                          resolution=resolution, mean=LITE_MEAN, std=LITE_STD, device=device,
                          channels_last=True)  # faster on the CPU too (oneDNN), and the cuDNN path on a GPU
    was_training = model.training
    model.eval().to(device, memory_format=torch.channels_last)
    from tqdm.auto import tqdm

    chunks = []
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=on_cuda):
        for x, _ in tqdm(loader, desc=f"features at {resolution} px", disable=not progress, leave=False):
            chunks.append(torch.flatten(model.pool(model.features(x)), 1).float())
    model.train(was_training)
    return torch.cat(chunks)


def fit_linear_probe(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    weight_decay: float = 1e-3,
    max_iter: int = 100,
) -> nn.Linear:
    """Multinomial logistic regression on fixed features: a linear layer trained to convergence.

    The loss is convex, so a quasi-Newton method (L-BFGS) on the whole training set at once
    reaches the optimum in a few dozen steps, with no learning rate to tune. ``weight_decay``
    is the L2 penalty on the weights (not the bias).
    """
    num_classes = check_int("num_classes", num_classes, minimum=2)
    weight_decay = check_number("weight_decay", weight_decay, minimum=0.0)
    if features.dim() != 2 or len(features) != len(labels):
        raise ValueError(f"features must be (N, channels) with one label each; got {tuple(features.shape)} and {len(labels)} labels")
    probe = nn.Linear(features.shape[1], num_classes).to(features.device)
    optimizer = torch.optim.LBFGS(probe.parameters(), lr=1.0, max_iter=check_int("max_iter", max_iter, minimum=1),
                                  history_size=20, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(probe(features), labels) + weight_decay * probe.weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return probe.requires_grad_(False)


def install_probe(model: nn.Module, probe: nn.Linear) -> nn.Module:
    """Put a fitted probe in place of ``model``'s classifier: a complete CIFAR classifier.

    The probe *is* a last layer trained on frozen features; installed, the network classifies
    images end to end (and can be fine-tuned further from there).
    """
    old = model.classifier[-1]
    if old.in_features != probe.in_features:
        raise ValueError(f"the probe takes {probe.in_features} features, the model gives {old.in_features}")
    model.classifier[-1] = nn.Linear(probe.in_features, probe.out_features).to(old.weight.device)
    model.classifier[-1].load_state_dict(probe.state_dict())
    return model


def _accuracy(probe: nn.Linear, features: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return (probe(features).argmax(1) == labels).float().mean().item()


def linear_probe(
    model: nn.Module,
    data: CifarData,
    *,
    resolution: int,
    fractions: tuple[float, ...] = (0.1, 0.3, 1.0),
    weight_decay: float = 1e-3,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    seed: int = 0,
    progress: bool = True,
) -> tuple[dict, nn.Linear]:
    """Fit a linear probe on ``data`` (all of it: take a ``data.subset`` first for less);
    return a record like ``train``'s and the fitted probe (an ``nn.Linear``).

    The clock counts what the probe costs: embedding the training images, fitting, and (as
    in ``train``'s records) evaluating: embedding the test images once. ``fractions``: the
    probe is also fitted on the first 10% and 30% of the (shuffled) training images, which
    gives an accuracy-against-time curve like a training run's.
    """
    resolution = check_int("resolution", resolution, minimum=getattr(model, "min_resolution", 1))
    if not fractions or any(not 0 < f <= 1 for f in fractions):
        raise ValueError(f"fractions must be numbers in (0, 1], got {fractions}")
    device = torch.device(device) if device is not None else settings.default_device()
    order = torch.randperm(len(data.train_labels), generator=torch.Generator().manual_seed(seed))
    images, labels = data.train_images[order], data.train_labels[order].to(device)
    embed = dict(resolution=resolution, batch_size=batch_size, device=device, progress=progress)

    start = time.perf_counter()
    test_features = extract_features(model, data.test_images, **embed)
    test_labels = data.test_labels.to(device)
    _sync(device)
    eval_seconds = time.perf_counter() - start

    curve, features, done, embed_seconds = [], [], 0, 0.0
    for fraction in sorted(fractions):
        end = max(data.num_classes, round(fraction * len(labels)))
        start = time.perf_counter()
        if end > done:  # embed only the images not embedded yet
            features.append(extract_features(model, images[done:end], **embed))
            done = end
        _sync(device)
        embedded = time.perf_counter()
        embed_seconds += embedded - start
        probe = fit_linear_probe(torch.cat(features), labels[:end], data.num_classes, weight_decay=weight_decay)
        _sync(device)
        # A probe on the first `end` images costs their embedding, one fit, and the evaluation.
        seconds = embed_seconds + (time.perf_counter() - embedded) + eval_seconds
        curve.append({"train_images": end, "seconds": round(seconds, 3),
                      "test_accuracy": _accuracy(probe, test_features, test_labels)})
    record = {
        "method": "linear probe",
        "test_accuracy": curve[-1]["test_accuracy"],
        "train_seconds": curve[-1]["seconds"],
        "accuracy_curve": curve,
        "resolution": resolution,
        "weight_decay": weight_decay,
        "dataset": data.name,
        "data_source": data.source,
        "train_images": len(data.train_labels),
        "test_images": len(data.test_labels),
        "device": settings.device_name(device),
        "quick_mode": settings.quick_mode(),
        "git_commit": settings.git_commit(),
        "torch_version": torch.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    return record, probe


# --- fine-tuning and training from scratch: runs of effnet_lab.train ----------------------

def finetune_config(quick: bool | None = None, **overrides) -> TrainConfig:
    """The "fine-tuning" recipe (``effnet_lab.recipes``): SGD with Nesterov momentum, learning
    rate 0.04 for batches of 256 (scaled linearly with the batch), cosine schedule, label
    smoothing 0.1, at 224 px (CIFAR upsampled to ImageNet size, as in the paper)."""
    return _config("fine-tuning", quick, overrides)


def scratch_config(quick: bool | None = None, **overrides) -> TrainConfig:
    """The "from-scratch" recipe: ``train``'s defaults (learning rate 0.1 per 256 images, weight
    decay 5e-4), at the same resolution, batch and number of epochs as ``finetune_config``."""
    return _config("from-scratch", quick, overrides)


def _config(name: str, quick: bool | None, overrides: dict) -> TrainConfig:
    fields = recipes.fields(name, quick, **overrides)
    full = recipes.RECIPES[name].full
    if "lr" in full and "lr" not in overrides:  # keep the recipe's lr per image when the batch changes
        fields["lr"] = full["lr"] * fields["batch_size"] / full["batch_size"]
    return TrainConfig(**fields)


# --- figures ------------------------------------------------------------------------------

METHOD_STYLES = {  # colour-blind-safe, the same in every figure of the lesson
    "linear probe": dict(color="#0173b2", marker="o"),
    "full fine-tuning": dict(color="#d55e00", marker="D"),
    "from scratch": dict(color="#333333", marker="s"),
}


def plot_accuracy_vs_time(records: dict[str, dict], *, ax=None, title: str | None = None):
    """Test accuracy against wall-clock seconds, one curve per record (``{label: record}``).

    Works with ``linear_probe``'s and ``train``'s records: both carry an ``accuracy_curve`` of
    {seconds, test_accuracy}, with the evaluation time on the clock.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
    for label, record in records.items():
        curve = record["accuracy_curve"]
        style = METHOD_STYLES.get(label, {})
        ax.plot([0] + [p["seconds"] for p in curve], [10.0] + [100 * p["test_accuracy"] for p in curve],
                label=f"{label} ({100 * record['test_accuracy']:.1f}%)", markevery=list(range(1, len(curve) + 1)),
                **style)
    ax.axhline(10, color="#999999", lw=1, ls=":", label="chance (10%)")
    ax.set_xlabel("wall-clock time (s), training + evaluation")
    ax.set_ylabel("CIFAR-10 test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_xlim(left=0)
    ax.legend(loc="best")
    if title:
        ax.set_title(title)
    return ax.figure


def plot_resolution(probe_records: list[dict], *, macs: dict[int, float] | None = None, ax=None,
                    title: str | None = None):
    """Linear-probe accuracy against the input side (CIFAR upsampled), with the backbone's
    multiply-adds per image on a second axis when ``macs`` ({resolution: MACs}) is given."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8.5, 4.8), layout="constrained")
    records = sorted(probe_records, key=lambda r: r["resolution"])
    sides = [r["resolution"] for r in records]
    ax.plot(sides, [100 * r["test_accuracy"] for r in records], label="linear probe accuracy",
            **METHOD_STYLES["linear probe"])
    ax.axvline(32, color="#999999", lw=1, ls=":")
    ax.text(32, 2, " CIFAR's own 32 px", color="#666666", va="bottom")
    ax.set_xlabel("input side (px): CIFAR's 32x32 images resized")
    ax.set_ylabel("CIFAR-10 test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_xticks(sides)
    handles, labels = ax.get_legend_handles_labels()
    if macs:
        cost = ax.twinx()
        cost.plot(sides, [macs[s] / 1e6 for s in sides], color="#029e73", ls="--", marker="^",
                  label="multiply-adds per image (M, right axis)")
        cost.set_ylabel("backbone multiply-adds per image (millions)")
        cost.set_ylim(bottom=0)
        cost.grid(False)
        more_handles, more_labels = cost.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    ax.legend(handles, labels, loc="upper left")
    if title:
        ax.set_title(title)
    return ax.figure


def shipped_report(folder: str | os.PathLike):
    """The figure and a one-line summary of the records of ``benchmarks/finetune_lite0.py``
    (``probe.json``, ``finetune.json``, ``scratch.json`` in ``folder``, read by
    ``results.transfer_records``): accuracy against time of the three methods, and the linear
    probe's accuracy against input size."""
    import matplotlib.pyplot as plt

    from .pretrained import efficientnet_lite0
    from .profile import count_macs
    from .results import transfer_records

    shipped = transfer_records(folder)
    record, probes = shipped["methods"]["full fine-tuning"], shipped["probes"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(15, 5), layout="constrained")
    plot_accuracy_vs_time(shipped["methods"], ax=left, title=f"shipped: {record['device']}, "
                                                             f"{record['train_images']:,} images, {record['resolution']} px")
    if probes:
        backbone = efficientnet_lite0()  # the architecture only: its MACs do not depend on the weights
        plot_resolution(probes, macs={r["resolution"]: count_macs(backbone, r["resolution"]) for r in probes},
                        ax=right, title="shipped: linear probes")
    else:
        right.set_axis_off()
    return fig, shipped["text"]
