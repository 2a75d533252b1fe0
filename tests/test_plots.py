"""Figures and the equal-FLOPs table, drawn from run folders (written here as a sweep writes them)."""

import json
import zlib

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
pytest.importorskip("seaborn")
pd = pytest.importorskip("pandas")

from effnet_lab import plots, results as R  # noqa: E402
from effnet_lab.__main__ import main as cli  # noqa: E402
from run_records import write_comparison, write_run  # noqa: E402


def noise(*key) -> float:
    return 0.5 + (zlib.crc32(json.dumps(key).encode()) % 1000) / 10_000


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Quick-mode runs of every experiment: compare (phi 1 and 2, 3 seeds), grid and width-grid."""
    out = tmp_path_factory.mktemp("results")
    write_comparison(out, lambda family, phi, seed: noise(family, phi, seed), phis=(1.0, 2.0), quick=True)
    for table in ("grid", "width-grid"):
        write_run(out, table=table, family="baseline", accuracy=noise("baseline", 0.0, 0), quick=True)
    for alpha in (1.0, 1.2, 1.4):
        for gamma in (1.0, 1.15):
            write_run(out, table="grid", family="grid", phi=1.0, alpha=alpha, gamma=gamma, depth=alpha,
                      resolution=round(21 * gamma), width=0.5 * (2 / (alpha * gamma ** 2)) ** 0.5,
                      accuracy=noise(alpha, gamma), quick=True)
    for depth in (1.0, 2.0):
        for resolution in (21, 27):
            for width in (0.5, 0.71, 1.0):
                write_run(out, table="width-grid", family="width-at-dr", depth=depth, resolution=resolution,
                          width=width, accuracy=noise(depth, resolution, width), quick=True)
    return out


def titles(fig) -> str:
    texts = [ax.get_title() for ax in fig.axes] + ([fig._suptitle.get_text()] if fig._suptitle else [])
    return "\n".join(texts)


def test_every_figure_is_drawn_from_the_run_folders(results, tmp_path):
    written = plots.plot_all(results, tmp_path, log=lambda s: None)
    names = {path.name for path in written}
    assert {"scaling_methods.png", "scaling_per_second.png", "single_axis.png", "width_at_depth_resolution.png",
            "grid_search.png", "equal_flops.md", "equal_flops.csv"} <= names
    for path in written:
        assert path.stat().st_size > 1000 if path.suffix == ".png" else path.stat().st_size > 0
    assert (tmp_path / "equal_flops.md").read_text().startswith("These are quick-mode runs")


@pytest.mark.parametrize("draw", [plots.plot_scaling, plots.plot_single_axis, plots.plot_width_at_dr, plots.plot_grid])
def test_figures_are_labelled_and_say_quick_mode(results, draw):
    fig = draw(results)
    assert plots.QUICK_LABEL in titles(fig)  # quick-mode numbers never pass for results
    for ax in fig.axes:
        assert ax.get_xlabel()
    assert fig.axes[0].get_ylabel() or fig.axes[0].get_xlabel() == "test accuracy (%)"
    matplotlib.pyplot.close(fig)


def test_full_scale_figures_carry_no_quick_label(results):
    frame = plots.to_frame(results)
    frame["quick_mode"] = False
    fig = plots.plot_scaling(frame)
    assert plots.QUICK_LABEL not in titles(fig)
    matplotlib.pyplot.close(fig)


@pytest.mark.parametrize("against, x", [("macs", "mmacs"), ("seconds", "train_seconds")])
def test_scaling_figure_draws_one_point_per_model(results, against, x):
    frame = plots.to_frame(results)
    fig = plots.plot_scaling(frame, against=against)
    ax = fig.axes[0]
    mean = frame.groupby(["family", "phi"])[["accuracy", x]].mean()
    for family in plots.FAMILY_ORDER:
        # Each family's line: the baseline, then one point per phi, its seeds averaged.
        lines = [line for line in ax.get_lines()
                 if matplotlib.colors.same_color(line.get_color(), plots.FAMILY_COLORS[family])]
        assert len(lines) == 1, family
        expected = pd.concat([mean.loc[["baseline"]], mean.loc[[family]]]).sort_values(x)
        assert len(expected) == 1 + frame[frame["family"] == family]["phi"].nunique()
        assert np.allclose(lines[0].get_xdata(), expected[x]) and np.allclose(lines[0].get_ydata(), expected["accuracy"])
    assert ("seconds" in ax.get_xlabel()) == (against == "seconds")
    matplotlib.pyplot.close(fig)
    with pytest.raises(ValueError, match="against must be"):
        plots.plot_scaling(frame, against="joules")


def test_equal_flops_table_is_the_paired_comparison(results):
    table = plots.equal_flops_table(results / "compare")
    comparison = R.compare_families(results / "compare")
    assert len(table) == len(comparison) == 6
    frame = plots.to_frame(results / "compare")
    for e in comparison:
        best = e["single_axis"] == e["best_single_axis"]
        row = table.loc[(e["phi"], e["single_axis"] + (" (best)" if best else ""))]
        assert row["compound - axis (points)"] == f"{e['mean_difference']:+.2f}" and row["verdict"] == e["verdict"]
        assert row["95% CI"] == f"{e['ci_low']:+.2f} to {e['ci_high']:+.2f}" and row["seed pairs"] == 3
        means = frame[frame["phi"] == e["phi"]].groupby("family")[["accuracy", "train_seconds"]].mean()
        assert best == (means.loc[list(R.SINGLE_AXES), "accuracy"].idxmax() == e["single_axis"])
        assert row["axis s/run"] == f"{means.loc[e['single_axis'], 'train_seconds']:.0f}"
        assert row["compound s/run"] == f"{means.loc['compound', 'train_seconds']:.0f}"
    assert table.attrs["note"].startswith(R.verdict(results / "compare")) and "after the fact" in table.attrs["note"]


def test_equal_flops_table_counts_a_difference_only_beyond_the_interval(results):
    frame = plots.to_frame(results / "compare")
    frame["quick_mode"] = False

    def verdict(compound, single) -> str:
        # Every single axis at `single` (per seed); compound at `compound`.
        for family, values in (("compound", compound), *((f, single) for f in plots.SINGLE_AXES)):
            for seed, value in enumerate(values):
                frame.loc[(frame["family"] == family) & (frame["seed"] == seed), "test_accuracy"] = value
        return plots.equal_flops_table(frame).loc[(1.0, "width (best)"), "verdict"]

    assert verdict((0.60, 0.62, 0.61), (0.50, 0.53, 0.52)) == "ahead"
    assert verdict((0.40, 0.45, 0.42), (0.50, 0.53, 0.52)) == "behind"
    # Compound's mean is 5 points ahead, but the paired differences (10, -5, 10) straddle zero.
    assert verdict((0.60, 0.48, 0.62), (0.50, 0.53, 0.52)) == "tie"
    one_seed = frame[frame["seed"] == 0]
    assert plots.equal_flops_table(one_seed).loc[(1.0, "width (best)"), "verdict"] == "not enough seeds"


def test_plots_command_line(results, tmp_path, capsys):
    assert cli(["plots", str(results / "compare"), str(results / "grid"), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "scaling_methods.png").exists() and (tmp_path / "grid_search.png").exists()
    assert "skipped width_at_depth_resolution" in capsys.readouterr().out  # not in these tables


def test_bad_results_are_clear_errors(results, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty"):
        plots.to_frame(empty)
    with pytest.raises(FileNotFoundError, match="no results"):
        plots.to_frame(tmp_path / "missing")
    with pytest.raises(TypeError, match="results must be"):
        plots.to_frame(42)
    with pytest.raises(ValueError, match="not sweep results"):
        plots.to_frame([{"hello": 1}])
    mixed = plots.to_frame(results)
    mixed.loc[mixed.index[0], "quick_mode"] = False
    with pytest.raises(ValueError, match="different scales"):
        plots.to_frame(mixed)
    mixed = plots.to_frame(results)
    mixed["precision"] = "fp32"
    mixed.loc[mixed.index[0], "precision"] = "bf16 autocast"  # a model's runs in two precisions
    with pytest.raises(ValueError, match=r"mix precisions \(bf16 autocast, fp32\)"):
        plots.to_frame(mixed)
    damaged = tmp_path / "damaged" / "run" / "record.json"
    damaged.parent.mkdir(parents=True)
    damaged.write_text("{")
    for argv, words in [(["plots", str(empty), "--out", str(tmp_path)], "empty"),
                        (["plots", str(tmp_path / "missing"), "--out", str(tmp_path)], "no results file"),
                        (["plots", str(damaged.parents[1]), "--out", str(tmp_path)], "is damaged")]:
        with pytest.raises(SystemExit) as exit_info:
            cli(argv)
        assert exit_info.value.code == 2
        assert words in capsys.readouterr().err


def test_style_makes_readable_figures():
    plots.style()
    assert matplotlib.rcParams["axes.titleweight"] == "bold"
    assert matplotlib.rcParams["font.size"] > 10


def test_throughput_table_reads_the_shipped_measurements_and_names_the_faster_peer(tmp_path):
    measured = {"device": "NVIDIA H100 80GB HBM3", "date": "2026-11-26T00:00:00+00:00", "results": [
        {"config": "cifar", "resolution": 32, "batch_size": 256, "precision": "bf16 autocast", "compile": False,
         "images_per_second": {"effnet_lab": 900.0, "timm": 1000.0, "torchvision": 800.0}},
        {"config": "imagenet", "resolution": 224, "batch_size": 128, "precision": "bf16 autocast", "compile": False,
         "images_per_second": {"effnet_lab": 330.0, "timm": 200.0, "torchvision": 300.0}},
    ]}
    (tmp_path / "throughput-eager.json").write_text(json.dumps(measured))
    (tmp_path / "data-pipeline.json").write_text("{}")  # another benchmark's file: not read
    table = plots.throughput_table(tmp_path)
    assert list(table["vs faster peer"]) == [0.9, 1.1]  # against timm, then against torchvision
    assert list(table["config"]) == ["cifar (32 px)", "imagenet (224 px)"]
    shipped = plots.throughput_table(plots.Path(__file__).parents[1] / "results" / "benchmarks-cpu")
    assert len(shipped) == 2 and set(shipped["device"]) == {"cpu (2 threads)"}
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no throughput measurements"):
        plots.throughput_table(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no such file or folder: .*missing"):
        plots.throughput_table(tmp_path / "missing")


def test_accuracy_against_time_draws_the_curve_and_the_target():
    curve = [{"epoch": 1, "seconds": 30.0, "test_accuracy": 0.5}, {"epoch": 2, "seconds": 60.0, "test_accuracy": 0.7}]
    fig = plots.plot_time_to_accuracy(curve, title="t")
    ax = fig.axes[0]
    x, y = ax.lines[0].get_data()
    assert list(x) == [0.5, 1.0] and list(y) == [50.0, 70.0]
    assert len(ax.lines) == 3  # the curve, the 90% line and the 5-minute line
    with pytest.raises(ValueError, match="no epoch finished"):
        plots.plot_time_to_accuracy([])


def test_time_to_accuracy_report_draws_what_results_reads(tmp_path):
    curve = [{"epoch": 1, "seconds": 60.0, "test_accuracy": 0.8}, {"epoch": 2, "seconds": 120.0, "test_accuracy": 0.91}]
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "record.json").write_text(json.dumps({"accuracy_curve": curve}))
    (tmp_path / "summary.json").write_text(json.dumps({
        "quick": False, "target_accuracy": 0.9, "seconds_to_target": 120.0, "final_test_accuracy": 0.91,
        "test_set": "full test set (10000 images)", "train_seconds": 120.0, "epochs": 2, "device": "NVIDIA H200",
        "data_source": "cifar10-jpeg.tar.gz", "date": "2026-12-01T00:00:00"}))
    fig, text = plots.time_to_accuracy_report(tmp_path)
    assert list(fig.axes[0].lines[0].get_ydata()) == [80.0, 91.0] and text.startswith("90% after 120 s; final 91.00%")
    assert "NVIDIA H200" in fig.axes[0].get_title()
    assert plots.time_to_accuracy_report(tmp_path / "none") == (None, f"no time-to-accuracy results in {tmp_path / 'none'} yet")
