"""Why the bottleneck of MBConv is linear: ReLU destroys information in few dimensions (lesson 03).

MobileNetV2 (Sandler et al. 2018, Figure 1) makes the point with a small experiment:

1. take a 2-D curve (a spiral) - the "manifold of interest";
2. embed it in ``n`` dimensions with a random matrix ``T`` (n x 2): ``y = T x``;
3. apply ReLU: ``z = max(0, y)``;
4. project back to 2-D with the pseudo-inverse: ``x_hat = T^+ z``.

With n = 2 or 3, ReLU zeroes most of ``y`` and whole pieces of the spiral collapse onto
each other: nothing downstream can undo that. With n = 15 or 30, every point keeps enough
positive coordinates to be recovered. So: apply ReLU (or SiLU) only where the tensor is
wide (after the 1x1 expansion), and keep the narrow bottleneck *linear*.

Two numbers measure the loss for each n:

- ``recoverable``: the fraction of points that ReLU leaves uniquely determined: at least
  two of their coordinates stay positive along independent directions, so ``x`` can be
  solved for from those coordinates alone;
- ``linear_error``: how far the best *linear* read-out of ``z`` (least squares, what the
  next 1x1 convolution could learn) lands from ``x``, relative to the spiral's size.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from .checks import check_int, check_number


def spiral(n_points: int = 1000, turns: float = 2.0) -> torch.Tensor:
    """Points along a planar spiral, in order along the curve, shape (n_points, 2)."""
    n_points = check_int("n_points", n_points, minimum=2)
    turns = check_number("turns", turns, exclusive_minimum=0.0)
    t = torch.linspace(0, 1, n_points, dtype=torch.float64)
    angle = 2 * math.pi * turns * t
    radius = 0.2 + t  # never through the origin, so every point is a real direction
    return torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)


def random_embedding(dim: int, seed: int = 0) -> torch.Tensor:
    """The random matrix T (dim x 2) with standard normal entries."""
    dim = check_int("dim", dim, minimum=2)
    generator = torch.Generator().manual_seed(check_int("seed", seed))
    return torch.randn(dim, 2, generator=generator, dtype=torch.float64)


def relu_roundtrip(points: torch.Tensor, embedding: torch.Tensor, activation: bool = True) -> torch.Tensor:
    """``T^+ relu(T x)`` for every point x (``activation=False``: ``T^+ T x``, which is exactly x)."""
    if not isinstance(points, torch.Tensor) or points.dim() != 2 or points.shape[1] != 2:
        raise ValueError("points must be a tensor of shape (n, 2)")
    embedded = points.to(embedding.dtype) @ embedding.T
    if activation:
        embedded = torch.relu(embedded)
    return embedded @ torch.linalg.pinv(embedding).T


def recoverable_fraction(points: torch.Tensor, embedding: torch.Tensor) -> float:
    """Fraction of points whose positive coordinates alone still pin down the 2-D point."""
    positive = ((points.to(embedding.dtype) @ embedding.T) > 0).to(embedding.dtype)
    # The surviving rows of T pin x down when they span the plane: their Gram matrix
    # T_S^T T_S (2x2, one per point) is then invertible.
    gram = torch.einsum("pi,ia,ib->pab", positive, embedding, embedding)
    scale = (embedding**2).sum()
    recoverable = torch.linalg.det(gram) > 1e-9 * scale**2
    return float(recoverable.double().mean())


def linear_readout_error(points: torch.Tensor, embedding: torch.Tensor, activation: bool = True) -> float:
    """Mean error of the best affine read-out of x from relu(T x), relative to the mean |x|."""
    points = points.to(embedding.dtype)
    features = points @ embedding.T
    if activation:
        features = torch.relu(features)
    features = torch.cat([features, torch.ones(len(points), 1, dtype=features.dtype)], dim=1)
    weights = torch.linalg.lstsq(features, points, driver="gelsd").solution
    error = (features @ weights - points).norm(dim=1).mean()
    return float(error / points.norm(dim=1).mean())


@dataclass(frozen=True)
class ManifoldResult:
    """One embedding dimension: the projected-back points and the two loss measures."""

    dim: int
    recovered: torch.Tensor  # T^+ relu(T x) for the first random T, shape (n_points, 2)
    recoverable: float  # mean over the random T's
    linear_error: float  # mean over the random T's


def manifold_experiment(
    dims: Iterable[int] = (2, 3, 5, 15, 30),
    n_points: int = 500,
    trials: int = 5,
    seed: int = 0,
    activation: bool = True,
) -> list[ManifoldResult]:
    """Run the experiment for each dimension, averaging the measures over ``trials`` matrices."""
    points = spiral(n_points)
    trials = check_int("trials", trials, minimum=1)
    seed = check_int("seed", seed)
    results = []
    for dim in dims:
        dim = check_int("dim", dim, minimum=2)
        embeddings = [random_embedding(dim, seed + 1000 * dim + trial) for trial in range(trials)]
        if activation:
            recoverable = sum(recoverable_fraction(points, T) for T in embeddings) / trials
        else:
            recoverable = 1.0  # a linear map of full rank loses nothing
        error = sum(linear_readout_error(points, T, activation) for T in embeddings) / trials
        results.append(ManifoldResult(dim, relu_roundtrip(points, embeddings[0], activation), recoverable, error))
    return results


def plot_manifold(results: list[ManifoldResult], points: torch.Tensor | None = None):
    """The MobileNetV2 figure: the input spiral, then T^+ relu(T x) for each dimension."""
    import matplotlib.pyplot as plt

    points = spiral(len(results[0].recovered)) if points is None else points
    colour = torch.linspace(0, 1, len(points))  # position along the curve: shows what collapses
    panels = [("input: spiral in 2-D", points)] + [
        (f"n = {r.dim}\nrecoverable {r.recoverable:.0%}", r.recovered) for r in results
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 3.2), layout="constrained")
    for ax, (title, xy) in zip(axes, panels):
        ax.scatter(xy[:, 0], xy[:, 1], c=colour, cmap="viridis", s=4)
        ax.set_title(title, fontsize=11)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].set_xlabel("$x_1$")
    axes[0].set_ylabel("$x_2$")
    fig.suptitle(
        "Embed in n dimensions with a random T, apply ReLU, project back with $T^+$\n"
        "(colour: position along the spiral; recoverable: share of points ReLU leaves determined)",
        fontsize=12,
    )
    return fig
