"""Every training recipe in one table: each builds a valid configuration at both sizes, quick
mode changes what it says, and overrides win."""

import pytest

from effnet_lab import recipes
from effnet_lab.train import TrainConfig


@pytest.mark.parametrize("name", list(recipes.RECIPES))
def test_every_recipe_builds_at_both_sizes(name):
    full, quick = recipes.config(name, quick=False), recipes.config(name, quick=True)
    assert isinstance(full, TrainConfig) and isinstance(quick, TrainConfig)
    assert not full.quick and quick.quick
    for key, value in recipes.RECIPES[name].quick.items():
        assert getattr(quick, key) == value, (name, key)
    for key, value in recipes.RECIPES[name].full.items():
        if key not in recipes.RECIPES[name].quick:
            assert getattr(quick, key) == value, (name, key)  # quick mode changes only what it names


def test_overrides_win_and_the_switch_decides_the_size(monkeypatch):
    assert recipes.config("comparison", quick=False, epochs=3).epochs == 3
    monkeypatch.setenv("EFFNET_LAB_QUICK", "1")
    assert recipes.config("comparison").quick
    monkeypatch.setenv("EFFNET_LAB_QUICK", "0")
    assert not recipes.config("comparison").quick


def test_bad_names_and_settings_are_clear_errors():
    with pytest.raises(ValueError, match="unknown recipe 'nope'; choose one of"):
        recipes.fields("nope")
    with pytest.raises(ValueError, match="epochs"):
        recipes.config("comparison", quick=False, epochs=0)


def test_candidates_change_known_settings_only():
    from effnet_lab.experiments import Baseline

    fields = set(TrainConfig.__dataclass_fields__) | set(Baseline.__dataclass_fields__)
    for name, changes in recipes.CANDIDATES.items():
        assert set(changes) <= fields, name
    assert recipes.CANDIDATES["sgd"] == {}  # the recipe as it stands is one of the candidates


def test_the_table_lists_every_recipe():
    rows = recipes.table()
    assert [row["recipe"] for row in rows] == list(recipes.RECIPES)
    assert all(row["purpose"] for row in rows)
