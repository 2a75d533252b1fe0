"""The scaling experiments as data: equal-cost families, run identity, the pilot and the convergence check."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from effnet_lab import experiments as X
from effnet_lab import recipes
from effnet_lab.model import EfficientNet
from effnet_lab.profile import count_macs

ROOT = Path(__file__).resolve().parent.parent


def quick_runs(**kwargs):
    kwargs.setdefault("phis", [1])
    kwargs.setdefault("seeds", [0, 1])
    return X.plan("compare", quick=True, **kwargs)


# --- the experiments as data ----------------------------------------------------------------


def meta_macs(run):
    with torch.device("meta"):
        return count_macs(EfficientNet(run.model_config()), run.spec.resolution)


def test_scaled_models_cost_their_target_within_10_percent():
    runs = X.plan("compare", quick=False, seeds=[0])
    assert {run.spec.family for run in runs} == {"baseline", "width", "depth", "resolution", "compound"}
    assert sorted({run.spec.phi for run in runs}) == [0, 1, 2, 3]
    # The fast count that the cost matching uses agrees exactly with the project's own counter
    # (profile.count_macs, on a shape-only copy): checked on the baseline and the largest models.
    for run in runs:
        if run.spec.phi in (0, 3):
            assert meta_macs(run) == run.macs, run.spec.label
    for run in runs:
        factor = run.macs / runs[0].macs
        assert abs(factor / 2**run.spec.phi - 1) <= 0.10, f"{run.spec.label}: {factor:.2f}x"
    assert X.check_costs(runs) == []


def test_each_family_scales_only_its_own_axes():
    base = X.FULL.baseline
    for run in X.plan("compare", quick=False, seeds=[0]):
        s = run.spec
        changed = {name for name, value, start in (("width", s.width, base.width), ("depth", s.depth, base.depth),
                                                   ("resolution", s.resolution, base.resolution)) if value != start}
        expected = {"baseline": set(), "compound": {"width", "depth", "resolution"}}.get(s.family, {s.family})
        assert changed == expected, s.label


def test_compound_stays_within_cifar_resolution_and_resolution_scaling_is_flagged():
    runs = X.plan("compare", quick=False, seeds=[0])
    compound = [run for run in runs if run.spec.family == "compound"]
    assert [run.spec.resolution for run in compound] == sorted(run.spec.resolution for run in compound)
    assert max(run.spec.resolution for run in compound) <= X.NATIVE_RESOLUTION
    rows = X.plan_rows(runs)
    for row in rows:
        assert row["upsampled"] == (row["resolution"] > 32)
    # Resolution scaling beyond phi = 1 needs more pixels than CIFAR has: flagged, not hidden.
    assert any(row["upsampled"] for row in rows if row["family"] == "resolution")


def test_grid_candidates_obey_the_constraint_and_cost_twice():
    runs = X.plan("grid", quick=False)
    grid = [run for run in runs if run.spec.family == "grid"]
    assert len(grid) >= 6
    assert any(run.spec.alpha == 1.2 and run.spec.gamma == 1.15 for run in grid)  # the paper's choice
    for run in grid:
        assert run.spec.alpha >= 1 and run.spec.gamma >= 1
        beta = run.spec.width / run.baseline.width
        assert beta >= 1 - X.BETA_TOLERANCE
        assert abs(run.macs / run.baseline.macs / 2 - 1) <= 0.10, run.spec.label
    assert len({run.run_id for run in runs}) == len(runs)


def test_run_ids_are_stable_and_change_with_every_setting(monkeypatch):
    run = quick_runs(seeds=[0])[1]
    same = quick_runs(seeds=[0])[1]
    assert run.run_id == same.run_id and len(run.run_id) == 12
    # ... in another process too (nothing in the id depends on the interpreter's state)
    code = "from effnet_lab import experiments as X; print(X.plan('compare', quick=True, phis=[1], seeds=[0])[1].run_id)"
    other = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert other.stdout.strip() == run.run_id

    variants = [
        X.Run(run.experiment, run.spec.__class__(**{**vars(run.spec), "width": run.spec.width * 1.5}), run.baseline, run.train),
        X.Run(run.experiment, run.spec.__class__(**{**vars(run.spec), "depth": run.spec.depth * 2}), run.baseline, run.train),
        X.Run(run.experiment, run.spec, run.baseline, {**run.train, "resolution": run.train["resolution"] + 1}),
        X.Run(run.experiment, run.spec, run.baseline, {**run.train, "seed": 7}),
        X.Run(run.experiment, run.spec, run.baseline, {**run.train, "epochs": run.train["epochs"] + 1}),
        X.Run(run.experiment, run.spec, run.baseline, {**run.train, "lr": 0.5}),
        X.Run(run.experiment, run.spec, run.baseline, {**run.train, "dataset": "cifar100"}),
        X.Run(run.experiment, run.spec, X.Baseline(0.25, 0.5, 12, dropout=0.1), run.train),
    ]
    ids = {variant.run_id for variant in variants}
    assert run.run_id not in ids and len(ids) == len(variants)
    # Where the data is read from, or on which device, does not change the result.
    assert X.Run(run.experiment, run.spec, run.baseline, {**run.train, "device": "cpu", "data": "/x"}).run_id == run.run_id
    before = run.run_id
    monkeypatch.setattr(X, "CODE_VERSION", X.CODE_VERSION + 1)  # a change to what the code computes
    assert run.run_id != before


def test_experiments_share_the_runs_they_have_in_common():
    compare = {(run.spec.family, run.spec.phi, run.seed): run for run in X.plan("compare", quick=False)}
    grid = {(run.spec.alpha, run.spec.gamma): run for run in X.plan("grid", quick=False)}
    # Width-only at phi = 1 is the grid's (alpha, gamma) = (1, 1) candidate: one id, one run folder.
    assert grid[(1.0, 1.0)].run_id == compare[("width", 1.0, 0)].run_id
    assert grid[(None, None)].run_id == compare[("baseline", 0.0, 0)].run_id


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(experiment="nope"), ValueError, "unknown experiment"),
    (dict(experiment=[]), ValueError, "at least one experiment"),
    (dict(phis=[]), ValueError, "at least one"),
    (dict(phis=["a"]), TypeError, "number"),
    (dict(phis=[0]), ValueError, "greater than 0"),
    (dict(phis=[float("nan")]), ValueError, "finite"),
    (dict(phis="123"), TypeError, "list of numbers"),
    (dict(seeds=[]), ValueError, "at least one"),
    (dict(seeds=[-1]), ValueError, "seed"),
    (dict(epochs=0), ValueError, "epochs"),
])
def test_bad_plans_are_clear_errors(kwargs, error, words):
    kwargs = {"experiment": "compare", "quick": True, **kwargs}
    with pytest.raises(error, match=words):
        X.plan(kwargs.pop("experiment"), **kwargs)


def test_the_pilot_trains_the_baseline_under_every_candidate_recipe():
    runs = X.plan("pilot", quick=False)
    assert {run.spec.family for run in runs} == {"baseline"}
    epochs = recipes.fields("comparison", quick=False)["epochs"]
    for candidate, changes in recipes.CANDIDATES.items():
        mine = [run for run in runs if run.recipe == candidate]
        # every seed at the recipe's length, and the first seed at twice the length
        assert sorted((run.seed, run.train["epochs"]) for run in mine) == sorted(
            [(seed, epochs) for seed in X.FULL.seeds] + [(X.FULL.seeds[0], 2 * epochs)]), candidate
        for run in mine:
            for key, value in changes.items():
                where = run.baseline if key in X.Baseline.__dataclass_fields__ else run.train_config()
                assert getattr(where, key) == value, (candidate, key)
    assert len({run.run_id for run in runs}) == len(runs)  # no two candidates are the same run


def test_zero_init_candidate_starts_every_residual_block_as_the_identity():
    from effnet_lab.layers import MBConv
    from effnet_lab.model import build

    run = next(run for run in X.plan("pilot", quick=False) if run.recipe == "sgd-zero-init")
    model = build(run.model_config(), seed=0)
    blocks = [m for m in model.modules() if isinstance(m, MBConv)]
    assert any(b.use_residual for b in blocks)
    for block in blocks:
        assert bool((block.project.bn.weight == 0).all()) == block.use_residual
        x = torch.randn(2, block.in_channels, 8, 8)
        if block.use_residual:
            assert torch.equal(block.eval()(x), x)


def test_convergence_trains_the_phi_1_comparison_twice_as_long():
    compare = {(run.spec.family, run.spec.phi): run for run in X.plan("compare", quick=False, seeds=[0])}
    longer = X.plan("convergence", quick=False)
    assert {(run.spec.family, run.spec.phi) for run in longer} == {k for k in compare if k[1] <= 1}
    for run in longer:
        twin = compare[(run.spec.family, run.spec.phi)]
        assert run.train["epochs"] == 2 * twin.train["epochs"] and run.seed == 0
        assert run.model_config() == twin.model_config() and run.run_id != twin.run_id


def test_quick_mode_compares_one_seed_up_to_phi_2_and_full_scale_three_seeds():
    quick, full = X.plan("compare", quick=True), X.plan("compare", quick=False)
    assert {run.seed for run in quick} == {0} and max(run.spec.phi for run in quick) == 2
    assert {run.seed for run in full} == {0, 1, 2} and max(run.spec.phi for run in full) == 3
    assert all(run.train_config().quick and run.train_config().test_per_class * 10 >= 500 for run in quick)
