"""effnet_lab.results: reading run folders, the paired comparison, the criteria and the verdict."""

import json
import math
import statistics
from pathlib import Path

import pytest

from effnet_lab.experiments import plan

from effnet_lab import results as R
from run_records import write_comparison, write_run

# Seed noise in points, per family: small, so that the stability criterion passes.
NOISE = {"baseline": (0.1, -0.1, 0.0), "width": (0.0, 0.1, -0.1), "depth": (-0.1, 0.0, 0.1),
         "resolution": (0.05, -0.05, 0.0), "compound": (0.1, -0.1, 0.0)}
# Points at phi = 1: compound clearly ahead of width, clearly behind depth; resolution is
# compound minus (0.2, -0.2, 0.1) per seed: a tie.
LEVEL = {"baseline": 60.0, "width": 65.0, "depth": 75.0, "compound": 70.0}
TIE = (0.2, -0.2, 0.1)


def accuracy(family, phi, seed):
    if family == "resolution":
        return (LEVEL["compound"] + 2 * phi + NOISE["compound"][seed] - TIE[seed]) / 100
    return (LEVEL[family] + 2 * phi + NOISE[family][seed]) / 100


@pytest.fixture
def table(tmp_path):
    return write_comparison(tmp_path / "out", accuracy)


def entry(comparison, phi, axis):
    return next(e for e in comparison if e["phi"] == phi and e["single_axis"] == axis)


# --- reading ----------------------------------------------------------------------------------


def test_read_runs_flattens_records_found_at_any_depth(tmp_path):
    path = write_run(tmp_path / "deep" / "er", family="compound", phi=1.0, seed=2, accuracy=0.71, epochs=3,
                     first_loss=2.0)
    (tmp_path / "single-training" / "record.json").parent.mkdir()
    (tmp_path / "single-training" / "record.json").write_text(json.dumps({"test_accuracy": 0.5}))  # no run section
    [row] = R.read_runs(tmp_path)
    record = json.loads(path.read_text())
    assert row["family"] == "compound" and row["phi"] == 1.0 and row["seed"] == 2 and row["table"] == "compare"
    assert row["run_id"] == record["run"]["run_id"] and row["test_accuracy"] == 0.71 and "run" not in row
    assert row["accuracy_curve"] == record["accuracy_curve"] and row["config"] == record["config"]
    assert row["first_epoch_train_loss"] == 2.0 and row["epochs"] == 3 and row["record_file"] == str(path)
    assert R.read_runs(path) == [row]  # a record.json named directly


def test_a_run_appears_once_per_table(tmp_path):
    path = write_run(tmp_path, family="width", phi=1.0)
    assert len(R.read_runs(tmp_path, path)) == 1  # the same file, reached twice
    other = tmp_path / "grid" / path.parent.name / "record.json"  # the same run, kept by a second table
    other.parent.mkdir(parents=True)
    record = json.loads(path.read_text())
    record["run"].update(table="grid", experiment="grid")
    other.write_text(json.dumps(record))
    assert sorted(row["table"] for row in R.read_runs(tmp_path)) == ["compare", "grid"]


def test_damaged_or_foreign_records_are_one_sentence_errors(tmp_path):
    write_run(tmp_path, family="width", phi=1.0)
    damaged = tmp_path / "compare" / "broken" / "record.json"
    damaged.parent.mkdir()
    damaged.write_text('{"test_accuracy": 0.5, "run": {')  # cut short
    with pytest.raises(R.ResultsError, match=rf"run record {damaged} is damaged .*move it aside and rerun"):
        R.read_runs(tmp_path)
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"test_accuracy": 0.5}))
    with pytest.raises(R.ResultsError, match="has no sweep 'run' section"):
        R.read_runs(foreign)
    foreign.write_text("[1, 2]")
    with pytest.raises(R.ResultsError, match="it is not a sweep's record"):
        R.read_runs(foreign)
    with pytest.raises(FileNotFoundError, match="no results file or folder"):
        R.read_runs(tmp_path / "missing")


def test_to_frame_adds_points_and_drops_failed_runs(tmp_path):
    write_run(tmp_path, family="width", phi=1.0, accuracy=0.5)
    write_run(tmp_path, family="width", phi=1.0, seed=1, accuracy=None)  # diverged
    frame = R.to_frame(tmp_path)
    assert list(frame["accuracy"]) == [50.0] and frame["mmacs"].iloc[0] == pytest.approx(frame["macs"].iloc[0] / 1e6)
    assert len(R.read_runs(tmp_path)) == 2


# --- Student's t --------------------------------------------------------------------------------


@pytest.mark.parametrize("df, expected", [(1, 12.706), (2, 4.303), (4, 2.776), (10, 2.228), (30, 2.042)])
def test_t_quantiles_match_the_tables(df, expected):
    assert R.t_quantile(0.975, df) == pytest.approx(expected, abs=5e-4)
    assert R.t_quantile(0.025, df) == pytest.approx(-expected, abs=5e-4)


def test_t_quantile_tends_to_the_normal_and_refuses_nonsense():
    assert R.t_quantile(0.95, 5) == pytest.approx(2.015, abs=5e-4)
    assert R.t_quantile(0.975, 10_000) == pytest.approx(statistics.NormalDist().inv_cdf(0.975), abs=1e-3)
    assert R.t_quantile(0.5, 3) == pytest.approx(0.0, abs=1e-9)
    for p, df in [(1.0, 3), (0.9, 0), (0.9, 2.5)]:
        with pytest.raises(ValueError, match="t_quantile needs"):
            R.t_quantile(p, df)


# --- the comparison -----------------------------------------------------------------------------


def test_compare_families_pairs_seeds_and_gives_the_interval(table):
    comparison = R.compare_families(table)
    assert {(e["phi"], e["single_axis"]) for e in comparison} == {(1.0, a) for a in R.SINGLE_AXES}
    width, depth, resolution = (entry(comparison, 1.0, a) for a in R.SINGLE_AXES)
    assert (width["verdict"], depth["verdict"], resolution["verdict"]) == ("ahead", "behind", "tie")
    differences = [100 * (accuracy("compound", 1.0, s) - accuracy("resolution", 1.0, s)) for s in range(3)]
    half = 4.303 * statistics.stdev(differences) / math.sqrt(3)
    assert resolution["pairs"] == 3 and resolution["mean_difference"] == pytest.approx(statistics.fmean(differences))
    assert (resolution["ci_low"], resolution["ci_high"]) == pytest.approx(
        (resolution["mean_difference"] - half, resolution["mean_difference"] + half), abs=1e-3)
    assert width["mean_difference"] == pytest.approx(5.0, abs=0.3) and width["ci_low"] > 0
    assert depth["mean_difference"] == pytest.approx(-5.0, abs=0.3) and depth["ci_high"] < 0
    assert {e["best_single_axis"] for e in comparison} == {"depth"}  # by mean, after the fact
    # Equal MACs, unequal time: the depth-only model took 1.6x as long per run.
    assert depth["single_seconds"] == pytest.approx(1.6 * depth["compound_seconds"])
    assert depth["single_images_per_second"] < depth["compound_images_per_second"]
    assert depth["compound_accuracy"] == pytest.approx(72.0, abs=0.1) and "ImageNet" in depth["paper_effect"]


def test_unpaired_seeds_are_ignored_and_one_pair_is_not_enough(table):
    write_run(table, family="compound", phi=1.0, seed=7, accuracy=0.99)  # no single-axis run with seed 7
    write_run(table, family="compound", phi=2.0, seed=0, accuracy=0.7)
    write_run(table, family="width", phi=2.0, seed=0, accuracy=0.6)
    write_run(table, family="depth", phi=2.0, seed=5, accuracy=0.6)  # no compound seed 5: no pair at all
    comparison = R.compare_families(table)
    assert entry(comparison, 1.0, "width")["pairs"] == 3
    assert entry(comparison, 1.0, "width")["compound_accuracy"] > 72.0  # the mean still counts seed 7
    lone = entry(comparison, 2.0, "width")
    assert (lone["pairs"], lone["verdict"], lone["ci_low"]) == (1, "not enough seeds", None)
    assert lone["mean_difference"] == pytest.approx(10.0)
    assert entry(comparison, 2.0, "depth")["pairs"] == 0
    assert "not yet comparable with width (1 seed pair)" in R.verdict(table)


def test_other_recipes_and_lengths_stay_out_of_the_comparison(table):
    write_run(table, family="compound", phi=1.0, seed=0, accuracy=0.1, recipe="pilot-candidate")
    write_run(table, family="compound", phi=1.0, seed=0, accuracy=0.1, epochs=8)  # the convergence check's
    assert R.compare_families(table) == R.compare_families(write_comparison(table.parent / "again", accuracy))


# --- the criteria -------------------------------------------------------------------------------


def test_a_stable_recipe_passes_and_each_kind_of_instability_fails(tmp_path, table):
    stability = R.criteria_report(table)["stability"]
    assert stability["pass"] and stability["configurations"] == 5 and stability["pooled_sd"] < 0.2

    def noisy(spread):  # every configuration's seeds `spread` points apart
        return lambda family, phi, seed: accuracy(family, phi, seed) + spread * (seed - 1) / 100

    wide = R.criteria_report(write_comparison(tmp_path / "wide", noisy(0.8)))["stability"]
    assert wide["pooled_sd"] > R.MAX_POOLED_SD and wide["pass"] is False
    # One configuration scatters (SD 1.2 > 1.0) while the pooled SD stays under 0.5.
    one = write_comparison(tmp_path / "one", accuracy, phis=(1.0, 2.0, 3.0))
    for seed, shift in enumerate((-1.2, 0.0, 1.2)):
        write_run(one, family="width", phi=3.0, seed=seed, accuracy=accuracy("width", 3.0, seed) + shift / 100)
    report = R.criteria_report(one)["stability"]
    assert report["pooled_sd"] <= R.MAX_POOLED_SD < R.MAX_CONFIG_SD < report["worst_sd"] and report["pass"] is False
    write_run(table, family="width", phi=3.0, seed=0, first_loss=2.31)  # still at chance after an epoch
    assert R.criteria_report(table)["stability"]["runs_at_chance"] and not R.criteria_report(table)["stability"]["pass"]


def test_a_failed_run_fails_stability(table):
    write_run(table, family="depth", phi=2.0, seed=0, accuracy=None)
    stability = R.criteria_report(table)["stability"]
    assert len(stability["failed_runs"]) == 1 and stability["pass"] is False


def long_runs(root, shift, flip=False):
    """The convergence check's runs: baseline and the phi = 1 models at 8 epochs, one seed."""
    write_run(root, table="convergence", family="baseline", epochs=8, accuracy=(LEVEL["baseline"] + shift) / 100)
    for family in R.SINGLE_AXES + ("compound",):
        value = accuracy(family, 1.0, 0) + 0.02 + (0.2 if flip and family == "width" else 0)
        write_run(root, table="convergence", family=family, phi=1.0, epochs=8, accuracy=value)


def test_convergence_needs_the_long_runs_a_small_shift_and_the_same_ranking(tmp_path, table):
    assert R.criteria_report(table)["convergence"]["pass"] is None  # not measured
    long_runs(table, 0.5)
    convergence = R.criteria_report(table)["convergence"]
    assert convergence["baseline_shift"] == pytest.approx(0.5) and convergence["pass"] is True
    assert convergence["ranking"] == convergence["long_ranking"] == ["depth", "compound", "resolution", "width"]
    drifting = write_comparison(tmp_path / "drift", accuracy)
    long_runs(drifting, 1.5)
    assert R.criteria_report(drifting)["convergence"]["pass"] is False
    flipping = write_comparison(tmp_path / "flip", accuracy)
    long_runs(flipping, 0.2, flip=True)  # width jumps from last to first
    convergence = R.criteria_report(flipping)["convergence"]
    assert convergence["long_ranking"][0] == "width" and convergence["pass"] is False


def test_seeds_need_three_pairs(tmp_path, table):
    assert R.criteria_report(table)["seeds"] == {"fewest_seeds": 3, "fewest_pairs": 3, "min_seeds": 3, "pass": True}
    two = R.criteria_report(write_comparison(tmp_path / "two", accuracy, seeds=(0, 1)))["seeds"]
    assert (two["fewest_seeds"], two["pass"]) == (2, False)


# --- the verdict --------------------------------------------------------------------------------


def agrees(sentence, comparison):
    """Every comparison is said in the sentence with its own verdict and numbers, and no other."""
    words = {"ahead": "ahead of", "behind": "behind", "tie": "tied with"}
    for e in comparison:
        said = f"{words[e['verdict']]} {e['single_axis']} ({e['mean_difference']:+.1f} points, 95% CI {e['ci_low']:+.1f}"
        assert said in sentence
        assert [w for w in words.values() if f"{w} {e['single_axis']} (" in sentence] == [words[e["verdict"]]]


def test_the_verdict_says_what_the_table_says_and_trusts_it_only_when_the_criteria_pass(tmp_path, table):
    long_runs(table, 0.5)
    sentence = R.verdict(table)
    agrees(sentence, R.compare_families(table))
    assert sentence.startswith("At phi = 1 compound scaling is ahead of width")
    assert "meets the stability, convergence and seed criteria" in sentence and ". " not in sentence  # one sentence
    assert "not yet to be trusted" not in sentence

    unstable = write_comparison(tmp_path / "unstable", lambda f, p, s: accuracy(f, p, s) + 0.015 * (s - 1))
    sentence = R.verdict(unstable)
    agrees(sentence, R.compare_families(unstable))
    assert "fails the stability criterion (pooled SD 1." in sentence and "convergence is not measured" in sentence
    assert sentence.endswith("so these differences are not yet to be trusted.")


def test_quick_mode_answers_nothing(tmp_path):
    quick = write_comparison(tmp_path, accuracy, quick=True)
    assert R.verdict(quick).startswith("These are quick-mode runs") and "answer nothing" in R.verdict(quick)
    assert R.criteria_report(quick)["quick_mode"] is True


# --- the shipped measurements -------------------------------------------------------------------


def test_shipped_scaling_prefers_gpu_runs_and_says_how_many_are_in(tmp_path):
    assert R.shipped_scaling(None)[0] is None
    assert R.shipped_scaling(tmp_path)[0] is None
    quick = tmp_path / "scaling-quick" / "compare"
    quick.mkdir(parents=True)
    assert R.shipped_scaling(tmp_path)[0] == quick and "CPU quick mode" in R.shipped_scaling(tmp_path)[1]
    gpu = tmp_path / "scaling-gpu"
    (gpu / "compare").mkdir(parents=True)
    assert R.shipped_scaling(tmp_path)[0] == quick  # an empty GPU folder: nothing to show yet
    write_run(gpu, family="width", phi=1.0)
    planned = len(plan("compare", quick=False))
    assert R.shipped_scaling(tmp_path) == (gpu / "compare",
                                           f"shipped: full scale on NVIDIA H200, fp32 (1 of {planned} runs so far)")


def test_transfer_records_pair_the_probe_with_the_finetuning(tmp_path):
    record = {"test_accuracy": 0.95, "test_set": "full test set", "epochs": 2, "train_seconds": 300.0,
              "date": "2026-12-01T00:00:00", "command": ["python", "x.py"], "resolution": 224,
              "accuracy_curve": [{"seconds": 300.0, "test_accuracy": 0.95}]}
    with pytest.raises(FileNotFoundError, match="no finetune.json"):
        R.transfer_records(tmp_path)
    (tmp_path / "finetune.json").write_text(json.dumps(record))
    probes = [dict(record, resolution=side, test_accuracy=0.8) for side in (32, 224)]
    (tmp_path / "probe.json").write_text(json.dumps({"runs": probes}))
    shipped = R.transfer_records(tmp_path)
    assert list(shipped["methods"]) == ["linear probe", "full fine-tuning"]
    assert shipped["methods"]["linear probe"]["resolution"] == 224 and len(shipped["probes"]) == 2
    assert shipped["text"] == "fine-tuned Lite0: 95.00% on full test set (2 epochs, 300 s, 2026-12-01, python x.py)"


def test_the_shipped_quick_comparison_learns_every_model_clearly_above_chance():
    """Quick mode illustrates, but it must illustrate learning: every model of the shipped quick
    comparison (python -m effnet_lab sweep compare --quick) at 20% or more (twice chance) on 500
    test images."""
    folder = Path(__file__).resolve().parents[1] / "results" / "scaling-quick" / "compare"
    rows = R.read_runs(folder)
    assert sorted(row["run_id"] for row in rows) == sorted(run.run_id for run in plan("compare", quick=True))
    for row in rows:
        assert row["test_images"] >= 500 and row["test_accuracy"] >= 0.20, (row["label"], row["test_accuracy"])
    assert "quick-mode runs" in R.verdict(rows)  # and the verdict says what they are
