"""Lesson 03's manifold experiment: ReLU loses information in few dimensions, not in many."""

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from effnet_lab import manifold


def test_spiral_is_ordered_and_avoids_the_origin():
    points = manifold.spiral(200)
    assert points.shape == (200, 2)
    radius = points.norm(dim=1)
    assert (radius > 0.1).all() and (radius.diff() > 0).all()  # moving outwards along the curve


@pytest.mark.parametrize("dim", [2, 5, 30])
def test_without_relu_the_round_trip_is_exact(dim):
    points = manifold.spiral(100)
    T = manifold.random_embedding(dim, seed=1)
    assert torch.allclose(manifold.relu_roundtrip(points, T, activation=False), points, atol=1e-9)
    assert manifold.linear_readout_error(points, T, activation=False) < 1e-9


def test_recoverable_fraction_on_a_hand_made_embedding():
    # T = identity: a point keeps both coordinates only in the first quadrant.
    T = torch.eye(2, dtype=torch.float64)
    points = torch.tensor([[1.0, 2.0], [1.0, -1.0], [-1.0, -1.0], [0.5, 0.5]], dtype=torch.float64)
    assert manifold.recoverable_fraction(points, T) == pytest.approx(0.5)
    # Two parallel rows never span the plane, even where both are positive.
    T = torch.tensor([[1.0, 1.0], [2.0, 2.0], [1.0, -1.0]], dtype=torch.float64)
    points = torch.tensor([[1.0, 0.0], [1.0, 0.5]], dtype=torch.float64)
    # [1, 0]: all three rows positive -> recoverable. [1, 0.5]: rows 1-3 give 1.5, 3, 0.5 -> also.
    assert manifold.recoverable_fraction(points, T) == 1.0
    points = torch.tensor([[0.0, 1.0]], dtype=torch.float64)  # row 3 gives -1: only the parallel pair
    assert manifold.recoverable_fraction(points, T) == 0.0


def test_recoverable_fraction_matches_a_rank_computation():
    points = manifold.spiral(60)
    for dim in (3, 5):
        T = manifold.random_embedding(dim, seed=7)
        positive = (points @ T.T) > 0
        brute = sum(torch.linalg.matrix_rank(T[rows]).item() == 2 for rows in positive if rows.sum() >= 2)
        assert manifold.recoverable_fraction(points, T) == pytest.approx(brute / len(points))


def test_more_dimensions_lose_less():
    results = manifold.manifold_experiment(dims=(2, 30), n_points=300, trials=3)
    low, high = results
    assert low.recoverable < high.recoverable and high.recoverable > 0.99
    assert high.linear_error < low.linear_error / 10
    assert low.recovered.shape == (300, 2)


def test_plot_has_a_panel_per_dimension():
    results = manifold.manifold_experiment(dims=(2, 3, 15), n_points=100, trials=1)
    fig = manifold.plot_manifold(results)
    assert len(fig.axes) == 4
    assert all(ax.get_title() for ax in fig.axes)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="dim"):
        manifold.random_embedding(1)
    with pytest.raises(ValueError, match="points"):
        manifold.relu_roundtrip(torch.zeros(5, 3), manifold.random_embedding(3))
    with pytest.raises(ValueError, match="n_points"):
        manifold.spiral(1)
