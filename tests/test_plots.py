"""Figures and the equal-FLOPs table, drawn from results tables (made here with a fake trainer)."""

import json
import zlib

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
pytest.importorskip("seaborn")
pd = pytest.importorskip("pandas")

from effnet_lab import experiments as X  # noqa: E402
from effnet_lab import plots  # noqa: E402
from effnet_lab.__main__ import main as cli  # noqa: E402


def fake_train(model, config, *, data=None, run_dir=None, progress=True, model_spec=None, command=None):
    key = json.dumps([config.to_dict(), model_spec], sort_keys=True, default=str)
    accuracy = 0.5 + (zlib.crc32(key.encode()) % 1000) / 10_000
    return {"test_accuracy": accuracy, "train_seconds": 0.01, "epochs": config.epochs, "quick_mode": config.quick}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A quick-scale table with every experiment: compare (2 seeds), grid and width-grid."""
    out = tmp_path_factory.mktemp("results")
    runs = X.plan(["compare", "grid", "width-grid"], quick=True, phis=[1, 2])
    runs = [run for run in runs if run.experiment != "grid" or run.spec.phi == 1]
    X.run_sweep(runs, out, runs_dir=out / "runs", train_fn=fake_train, log=lambda s: None)
    return out


def titles(fig) -> str:
    texts = [ax.get_title() for ax in fig.axes] + ([fig._suptitle.get_text()] if fig._suptitle else [])
    return "\n".join(texts)


def test_every_figure_is_drawn_from_a_table(results, tmp_path):
    written = plots.plot_all(results, tmp_path, log=lambda s: None)
    names = {path.name for path in written}
    assert {"scaling_methods.png", "single_axis.png", "width_at_depth_resolution.png", "grid_search.png",
            "equal_flops.md", "equal_flops.csv"} <= names
    for path in written:
        assert path.stat().st_size > 1000 if path.suffix == ".png" else path.stat().st_size > 0


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


def test_scaling_figure_draws_one_point_per_model(results):
    frame = plots.to_frame(results)
    fig = plots.plot_scaling(frame)
    ax = fig.axes[0]
    mean = frame.groupby(["family", "phi"])[["accuracy", "mmacs"]].mean()
    for family in plots.FAMILY_ORDER:
        # Each family's line: the baseline, then one point per phi, its seeds averaged.
        lines = [line for line in ax.get_lines()
                 if matplotlib.colors.same_color(line.get_color(), plots.FAMILY_COLORS[family])]
        assert len(lines) == 1, family
        expected = pd.concat([mean.loc[["baseline"]], mean.loc[[family]]]).sort_values("mmacs")
        assert len(expected) == 1 + frame[frame["family"] == family]["phi"].nunique()
        assert np.allclose(lines[0].get_xdata(), expected["mmacs"]) and np.allclose(lines[0].get_ydata(), expected["accuracy"])
    matplotlib.pyplot.close(fig)


def test_equal_flops_table_averages_seeds_and_compares_compound(results):
    frame = plots.to_frame(results)
    table = plots.equal_flops_table(frame)
    assert list(table.index) == [1.0, 2.0]
    for phi in (1.0, 2.0):
        rows = frame[(frame["phi"] == phi) & frame["family"].isin(plots.FAMILY_ORDER)]
        means = rows.groupby("family")["accuracy"].mean()
        assert table.loc[phi, "compound"].startswith(f"{means['compound']:.2f} ±")
        best = max(plots.SINGLE_AXES, key=lambda f: means[f])
        assert table.loc[phi, "compound - best single"] == f"{means['compound'] - means[best]:+.2f} (vs {best})"


def test_equal_flops_table_counts_a_difference_only_beyond_the_seed_spread(results):
    frame = plots.to_frame(results)
    frame = frame[frame["phi"].isin([0.0, 1.0])].copy()
    seed0 = frame["seed"] == frame["seed"].min()

    def verdict(compound: tuple[float, float], single: tuple[float, float]) -> str:
        # Every single axis at `single` (seed 0, seed 1); compound at `compound`.
        for family, (first, second) in (("compound", compound), *((f, single) for f in plots.SINGLE_AXES)):
            rows = frame["family"] == family
            frame.loc[rows & seed0, "test_accuracy"] = first
            frame.loc[rows & ~seed0, "test_accuracy"] = second
        return plots.equal_flops_table(frame).loc[1.0, "beyond the seed spread?"]

    assert verdict((0.60, 0.62), (0.50, 0.59)).startswith("yes: compound ahead")
    assert verdict((0.40, 0.45), (0.50, 0.59)).startswith("yes: compound behind")
    # Compound's mean is 9.5 points ahead, but seed 1 of the single axis beats seed 0 of compound.
    assert verdict((0.55, 0.70), (0.50, 0.56)).startswith("no: a tie")
    one_seed = frame[seed0]
    assert plots.equal_flops_table(one_seed).loc[1.0, "beyond the seed spread?"] == "one seed: no spread to judge by"


def test_plots_command_line(results, tmp_path, capsys):
    assert cli(["plots", str(results / "compare"), str(results / "grid"), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "scaling_methods.png").exists() and (tmp_path / "grid_search.png").exists()
    assert "skipped width_at_depth_resolution" in capsys.readouterr().out  # not in these tables


def test_bad_results_are_clear_errors(results, tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty"):
        plots.to_frame(empty)
    with pytest.raises(FileNotFoundError, match="no results"):
        plots.to_frame(tmp_path / "missing.jsonl")
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
    for argv, words in [(["plots", str(empty), "--out", str(tmp_path)], "empty"),
                        (["plots", str(tmp_path / "missing"), "--out", str(tmp_path)], "no results file")]:
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
