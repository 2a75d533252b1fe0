"""Scoring a child: the proxy, real short training (the "nas-child" recipe), the validation split."""

import pytest
import torch

from effnet_lab import nas, recipes
from effnet_lab.data import CifarData
from effnet_lab.nas import ProxyEvaluator, Search, SearchSpace, TrainEvaluator

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one CPU thread


def test_the_proxy_says_it_is_not_a_real_evaluation(capsys):
    Search(SearchSpace(), ProxyEvaluator(), "random", seed=0)
    assert "NOT a real evaluation" in capsys.readouterr().out


def test_the_proxy_is_deterministic_and_prefers_compute_with_diminishing_returns():
    space, proxy = SearchSpace(), ProxyEvaluator()
    small, large = space.decode([0, 0, 0, 0] * 4), space.decode([1, 2, 2, 1] * 4)
    assert proxy(small) == proxy(small)
    assert 0.1 <= proxy(small)["accuracy"] < proxy(large)["accuracy"] <= 0.99


# --- real training: the "nas-child" recipe ----------------------------------------------------


def test_the_train_evaluator_follows_the_nas_child_recipe():
    full = recipes.config("nas-child", quick=False)
    evaluator = TrainEvaluator()
    assert (evaluator.per_class, evaluator.val_per_class) == (full.subset_per_class, full.test_per_class)
    assert (evaluator.epochs, evaluator.batch_size, evaluator.recipe.lr) == (full.epochs, full.batch_size, full.lr)
    # Both sets come from validation_split (training images only); training uses them whole.
    assert evaluator.recipe.subset_per_class is None and evaluator.recipe.test_per_class is None
    assert evaluator.recipe.warmup_epochs == min(full.warmup_epochs, full.epochs / 4)
    assert not evaluator.recipe.quick


def test_quick_mode_trains_a_child_on_20_images_per_class_for_one_epoch(monkeypatch):
    monkeypatch.setenv("EFFNET_LAB_QUICK", "1")  # quick() asks for it; the plain constructor ignores the switch
    quick = TrainEvaluator.quick()
    assert (quick.per_class, quick.val_per_class, quick.epochs, quick.batch_size) == (20, 10, 1, 50)
    assert quick.recipe.warmup_epochs == 0.25 and quick.recipe.quick
    assert TrainEvaluator().epochs == recipes.config("nas-child", quick=False).epochs
    made = nas.make_evaluator("train", quick=True, seed=3, epochs=None)
    assert made.signature() == {"name": "train", "per_class": 20, "val_per_class": 10, "epochs": 1,
                                "batch_size": 50, "lr": None, "seed": 3, "data": None}


def test_the_arguments_override_the_recipe():
    evaluator = TrainEvaluator.quick(per_class=30, val_per_class=5, epochs=2, batch_size=60, lr=0.01, seed=1,
                                     device="cpu", data="cifar-copy")
    assert evaluator.signature() == {"name": "train", "per_class": 30, "val_per_class": 5, "epochs": 2,
                                     "batch_size": 60, "lr": 0.01, "seed": 1, "data": "cifar-copy"}
    recipe = evaluator.recipe
    assert (recipe.epochs, recipe.batch_size, recipe.lr, recipe.seed, recipe.device) == (2, 60, 0.01, 1, "cpu")
    assert recipe.warmup_epochs == 0.5  # a quarter of the epochs
    assert TrainEvaluator(epochs=8).recipe.warmup_epochs == 1.0  # at most the recipe's warm-up


@pytest.mark.parametrize("kwargs, match", [
    (dict(per_class=0), "per_class"),
    (dict(val_per_class=-1), "val_per_class"),
    (dict(epochs=0), "epochs"),
    (dict(per_class=2, batch_size=50), "larger than the 20 training images"),
    (dict(lr=0.0), "lr"),
    (dict(seed=-1), "seed"),
    (dict(device="gpu9"), "device"),
])
def test_bad_train_evaluator_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainEvaluator.quick(**kwargs)


def test_an_unknown_evaluator_is_refused():
    with pytest.raises(ValueError, match="evaluator"):
        nas.make_evaluator("oracle")


def toy_data(per_class=30, classes=3) -> CifarData:
    """Images that say who they are: image i holds the number i; labels shuffled across classes."""
    labels = torch.arange(classes).repeat(per_class)
    images = torch.arange(len(labels)).view(-1, 1, 1, 1).expand(-1, 3, 2, 2)
    return CifarData("cifar10", images, labels, images[:0], labels[:0], [f"class {c}" for c in range(classes)], "toy")


def test_the_validation_split_holds_other_training_images_of_every_class():
    data = toy_data()
    split = nas.validation_split(data, per_class=12, val_per_class=5, seed=0)
    train_ids, val_ids = split.train_images[:, 0, 0, 0], split.test_images[:, 0, 0, 0]
    assert torch.bincount(split.train_labels).tolist() == [12, 12, 12]
    assert torch.bincount(split.test_labels).tolist() == [5, 5, 5]
    assert not set(train_ids.tolist()) & set(val_ids.tolist())  # disjoint
    assert torch.equal(data.train_labels[train_ids], split.train_labels)  # labels travel with their images
    assert torch.equal(data.train_labels[val_ids], split.test_labels)
    assert "validation split" in split.source
    again = nas.validation_split(data, 12, 5, seed=0)
    assert torch.equal(again.test_images, split.test_images)  # reproducible from the seed
    other = nas.validation_split(data, 12, 5, seed=1)
    assert not torch.equal(other.test_images, split.test_images)
    with pytest.raises(ValueError, match="more than the 30 training images"):
        nas.validation_split(data, 25, 6)


def test_a_child_trains_briefly_on_real_cifar(cifar10):
    evaluator = TrainEvaluator.quick(device="cpu")
    data = evaluator.data()
    assert (len(data.train_labels), len(data.test_labels)) == (200, 100)
    config = SearchSpace().decode([0, 0, 0, 0] * 4)
    evaluation = evaluator(config)
    assert 0.0 <= evaluation["accuracy"] <= 1.0
    assert (evaluation["macs"], evaluation["params"]) == nas.measure(config)
    assert evaluation["train_seconds"] > 0 and evaluation["device"].startswith("cpu")
    assert "validation split of the training images" in evaluation["data_source"]
