"""Every figure of the scaling experiments, drawn from what ``effnet_lab.results`` reads (lessons 04-07).

Each function takes run folders (a sweep's output), a list of rows or a pandas DataFrame
(``results.to_frame`` accepts all three) and returns a matplotlib Figure:

- ``plot_scaling``: accuracy against MACs (log scale) for each way of scaling, with the
  spread over seeds as a band (the analogue of the paper's Figure 8); with
  ``against="seconds"``, against each model's measured training time instead: equal MACs
  are not equal time;
- ``plot_single_axis``: width, depth and resolution scaling side by side, each point marked
  with its multiplier (Figure 3), and where resolution stops adding information;
- ``plot_width_at_dr``: width scaling at fixed depth and resolution (Figure 4);
- ``plot_grid``: the alpha/beta/gamma grid search, ranked by accuracy (the paper's step 2);
- ``equal_flops_table``: ``results.compare_families`` as a table (the paper's Table 3, with
  seeds paired and a 95% interval), its note the computed verdict.

The lessons read what ships in ``results/`` through ``shipped_scaling`` (which folder to
plot, and its label), ``throughput_table`` (effnet_lab against timm and torchvision) and
``time_to_accuracy_report`` (B0's accuracy against wall time, ``plot_time_to_accuracy``);
``effnet_lab.results`` reads the files, this module only draws.

``plot_all(results, out_dir)`` writes every figure the runs have data for;
``python -m effnet_lab plots RESULTS --out DIR`` does the same from the command line.
Figures made from quick-mode runs say so in their title: those numbers mean nothing.

``style()`` is the look every lesson's figures share (seaborn, larger fonts). matplotlib,
seaborn and pandas are imported inside the functions: the package does not need them to train.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Sequence
from pathlib import Path

from . import results as _results
from .results import SINGLE_AXES, shipped_scaling, throughput_table, to_frame  # noqa: F401 (the lessons call them here)

FAMILY_ORDER = ("width", "depth", "resolution", "compound")
# Colour-blind-safe (seaborn "colorblind"), fixed per family so every figure agrees.
FAMILY_COLORS = {"baseline": "#333333", "width": "#0173b2", "depth": "#de8f05", "resolution": "#029e73",
                 "compound": "#d55e00", "grid": "#cc78bc", "width-at-dr": "#56b4e9"}
FAMILY_MARKERS = {"width": "o", "depth": "s", "resolution": "^", "compound": "D"}
AXIS_SYMBOLS = {"width": "w", "depth": "d", "resolution": "r"}
QUICK_LABEL = "QUICK MODE: tiny CPU runs, numbers are illustrations only"
NATIVE_RESOLUTION = 32


def style(context: str = "notebook", font_scale: float = 1.1) -> None:
    """Readable figures: seaborn's white grid, larger fonts, no legend frames, crisp saved PNGs.

    Call it once at the top of a lesson (the plotting functions here call it themselves).
    """
    import seaborn as sns

    sns.set_theme(context=context, style="whitegrid", font_scale=font_scale, rc={
        "figure.dpi": 100, "savefig.dpi": 150, "savefig.bbox": "tight",
        "axes.titleweight": "bold", "axes.titlesize": "medium", "legend.frameon": False,
        "axes.spines.top": False, "axes.spines.right": False,
    })


def plain_log_ticks(axis) -> None:
    """Ticks at 1, 2 and 5 x 10^n on a log axis, written as plain numbers (0.05, 20), not 5x10^-2."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())


def title_for(text: str, quick: bool) -> str:
    """``text``, with the quick-mode warning on a line above it when ``quick``."""
    return f"{QUICK_LABEL}\n{text}" if quick else text


# --- the table ----------------------------------------------------------------------------------


def is_quick(frame) -> bool:
    return bool("quick_mode" in frame and frame["quick_mode"].astype(bool).any())


def _by_model(frame):
    """Mean, min, max and count of accuracy over seeds, and mean training seconds, one row per
    (family, phi, model)."""
    if "train_seconds" not in frame:
        frame = frame.assign(train_seconds=math.nan)
    keys = [k for k in ("family", "phi", "width", "depth", "resolution") if k in frame]
    grouped = frame.groupby(keys, dropna=False).agg(
        accuracy=("accuracy", "mean"), low=("accuracy", "min"), high=("accuracy", "max"),
        std=("accuracy", "std"), seeds=("accuracy", "size"), mmacs=("mmacs", "mean"),
        macs_factor=("macs_factor", "mean"), upsampled=("upsampled", "max"),
        seconds=("train_seconds", "mean"),
    )
    return grouped.reset_index()


def _family_curve(models, family: str, x: str = "mmacs"):
    """The baseline and ``family``'s models, in order of cost: every family's curve starts at phi = 0."""
    return models[models["family"].isin(["baseline", family])].sort_values(x)


def _log_mmacs_axis(ax, label: str = "multiply-adds per image (millions, log scale)") -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=2, subs=(1.0, 1.5)))  # 16, 24, 32, 48: labels on a narrow range too
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.set_xlabel(label)


def _draw_curve(ax, curve, color, marker, label, x: str = "mmacs") -> None:
    ax.plot(curve[x], curve["accuracy"], color=color, marker=None, linewidth=2, label=None, zorder=2)
    native = curve[~curve["upsampled"].astype(bool)]
    upsampled = curve[curve["upsampled"].astype(bool)]
    ax.scatter(native[x], native["accuracy"], color=color, marker=marker, s=55, zorder=3, label=label)
    if len(upsampled):
        ax.scatter(upsampled[x], upsampled["accuracy"], facecolors="white", edgecolors=color,
                   marker=marker, s=55, linewidths=1.8, zorder=3)
    if (curve["seeds"] > 1).any():
        ax.fill_between(curve[x], curve["low"], curve["high"], color=color, alpha=0.18, linewidth=0, zorder=1)


# --- the figures ----------------------------------------------------------------------------------


def plot_scaling(results, *, ax=None, families: Sequence[str] = FAMILY_ORDER, against: str = "macs"):
    """Accuracy against MACs for each way of scaling the baseline (the paper's Figure 8); with
    ``against="seconds"``, against each model's mean measured training time per run: which
    family wins per second of training, not per multiply-add?"""
    import matplotlib.pyplot as plt

    if against not in ("macs", "seconds"):
        raise ValueError(f"against must be 'macs' or 'seconds', got {against!r}")
    style()
    frame = to_frame(results)
    models = _by_model(frame)
    x = "mmacs" if against == "macs" else "seconds"
    if models[x].isna().all():
        raise ValueError("these runs record no training time (train_seconds)")
    present = [f for f in families if (models["family"] == f).any()]
    if not present:
        raise ValueError(f"no rows of the families {list(families)} in these results")
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(9.5, 5), layout="constrained")
    for family in present:
        label = "compound (α, β, γ = 1.2, 1.1, 1.15)" if family == "compound" else f"{family} only"
        _draw_curve(ax, _family_curve(models, family, x), FAMILY_COLORS[family], FAMILY_MARKERS[family], label, x)
    baseline = models[models["family"] == "baseline"]
    if len(baseline):
        ax.scatter(baseline[x], baseline["accuracy"], color="black", marker="*", s=160, zorder=4,
                   label="baseline (φ = 0)")
    _log_mmacs_axis(ax, *(() if x == "mmacs" else ("training time per run (seconds, log scale)",)))
    ax.set_ylabel("test accuracy (%)")
    seeds = int(models["seeds"].max())
    notes = [f"band: range over {seeds} seeds" if seeds > 1 else "one seed per model"]
    if models["upsampled"].astype(bool).any():
        notes.append(f"hollow: input upsampled\nbeyond CIFAR's {NATIVE_RESOLUTION} px")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small", title="\n".join(notes),
              title_fontsize="x-small", alignment="left")
    title = "Scaling the baseline: one dimension or all three" + ("" if x == "mmacs" else ", per second")
    ax.set_title(title_for(title, is_quick(frame)))
    return fig if fig is not None else ax.figure


def plot_single_axis(results):
    """Width, depth and resolution scaling in three panels, each point marked with its
    multiplier: where does each one stop paying (the paper's Figure 3)?"""
    import matplotlib.pyplot as plt

    style()
    frame = to_frame(results)
    models = _by_model(frame)
    axes_present = [a for a in SINGLE_AXES if (models["family"] == a).any()]
    if not axes_present:
        raise ValueError("no single-axis (width, depth or resolution) rows in these results")
    fig, axes = plt.subplots(1, len(axes_present), figsize=(4.6 * len(axes_present), 4.4), sharey=True,
                             layout="constrained", squeeze=False)
    baseline = frame[frame["family"] == "baseline"]
    for ax, axis in zip(axes[0], axes_present):
        curve = _family_curve(models, axis)
        _draw_curve(ax, curve, FAMILY_COLORS[axis], FAMILY_MARKERS[axis], None)
        base_value = float(baseline[axis].iloc[0]) if len(baseline) else None
        for number, (_, point) in enumerate(curve.iterrows()):
            if axis == "resolution":
                text = f"{int(point['resolution'])} px"
            else:
                multiplier = point[axis] / base_value if base_value else point[axis]
                text = f"{AXIS_SYMBOLS[axis]}={multiplier:.2g}"
            # Labels alternate above and below the curve, so that neighbours do not overlap.
            ax.annotate(text, (point["mmacs"], point["accuracy"]), textcoords="offset points",
                        xytext=(0, 8 if number % 2 == 0 else -14), ha="center", fontsize="x-small")
        if axis == "resolution" and curve["upsampled"].astype(bool).any():
            native = curve[~curve["upsampled"].astype(bool)]
            if len(native):
                edge = native["mmacs"].max()
                ax.axvline(edge, color="grey", linestyle="--", linewidth=1)
                ax.text(edge, 0.03, f" {NATIVE_RESOLUTION} px: beyond,\n upsampled", transform=ax.get_xaxis_transform(),
                        fontsize="x-small", color="grey", va="bottom")
        _log_mmacs_axis(ax)
        ax.set_title(f"{axis} only")
        ax.margins(x=0.08, y=0.12)
    axes[0][0].set_ylabel("test accuracy (%)")
    fig.suptitle(title_for("Scaling one dimension at a time", is_quick(frame)), fontweight="bold")
    return fig


def plot_width_at_dr(results):
    """Width scaling at fixed (depth, resolution): more width pays more when the network is
    also deeper and sees larger images (the paper's Figure 4)."""
    import matplotlib.pyplot as plt

    style()
    frame = to_frame(results)
    rows = frame[frame["family"].isin(["width-at-dr", "baseline"])].copy()
    if not (rows["family"] == "width-at-dr").any():
        raise ValueError("no width-at-dr rows in these results (python -m effnet_lab sweep width-grid)")
    base = frame[frame["family"] == "baseline"].iloc[0]
    rows["d"] = (rows["depth"] / base["depth"]).round(2)
    rows["r"] = rows["resolution"].astype(int)
    models = rows.groupby(["d", "r", "width"]).agg(accuracy=("accuracy", "mean"), low=("accuracy", "min"),
                                                   high=("accuracy", "max"), mmacs=("mmacs", "mean"),
                                                   seeds=("accuracy", "size")).reset_index()
    fig, ax = plt.subplots(figsize=(9, 5), layout="constrained")
    palette = ["#0173b2", "#029e73", "#de8f05", "#d55e00", "#cc78bc", "#56b4e9"]
    for color, ((d, r), group) in zip(palette, models.groupby(["d", "r"])):
        group = group.sort_values("mmacs")
        ax.plot(group["mmacs"], group["accuracy"], marker="o", color=color, linewidth=2,
                label=f"d = {d:g}, r = {r} px")
        if (group["seeds"] > 1).any():
            ax.fill_between(group["mmacs"], group["low"], group["high"], color=color, alpha=0.18, linewidth=0)
    _log_mmacs_axis(ax)
    ax.set_ylabel("test accuracy (%)")
    ax.legend(title="along each line:\nwidth x1 to x2.83", loc="upper left", bbox_to_anchor=(1.02, 1.0),
              fontsize="small", title_fontsize="x-small", alignment="left")
    ax.set_title(title_for("Width scaling at fixed depth (d) and resolution (r)", is_quick(frame)))
    return fig


def plot_grid(results):
    """The grid search of step 2, ranked: which (alpha, beta, gamma) spends 2x MACs best?"""
    import matplotlib.pyplot as plt

    style()
    frame = to_frame(results)
    grid = frame[frame["family"] == "grid"]
    if grid.empty:
        raise ValueError("no grid rows in these results (python -m effnet_lab sweep grid)")
    base = frame[frame["family"] == "baseline"]
    base_width = float(base["width"].iloc[0]) if len(base) else float(grid["width"].min())
    ranked = grid.groupby(["alpha", "gamma", "width", "depth", "resolution"]).agg(
        accuracy=("accuracy", "mean"), low=("accuracy", "min"), high=("accuracy", "max"),
        seeds=("accuracy", "size"), factor=("macs_factor", "mean"), phi=("phi", "first")).reset_index()
    ranked["beta"] = (ranked["width"] / base_width) ** (1 / ranked["phi"])
    ranked = ranked.sort_values("accuracy").reset_index(drop=True)
    labels = [f"α={a:g}  β={b:.2f}  γ={g:g}  ({int(r)} px, {f:.2f}x)"
              for a, b, g, r, f in zip(ranked["alpha"], ranked["beta"], ranked["gamma"], ranked["resolution"],
                                       ranked["factor"])]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(ranked) + 1.8), layout="constrained")
    paper = (ranked["alpha"] == 1.2) & (ranked["gamma"] == 1.15)
    colors = [FAMILY_COLORS["compound"] if p else FAMILY_COLORS["grid"] for p in paper]
    ax.barh(range(len(ranked)), ranked["accuracy"], color=colors)
    if (ranked["seeds"] > 1).any():
        ax.errorbar(ranked["accuracy"], range(len(ranked)),
                    xerr=[ranked["accuracy"] - ranked["low"], ranked["high"] - ranked["accuracy"]],
                    fmt="none", ecolor="black", capsize=3)
    ax.set_yticks(range(len(ranked)), labels, fontsize="small")
    low = min(ranked["low"].min(), base["accuracy"].min() if len(base) else math.inf)
    high = ranked["high"].max()
    pad = max(0.5, 0.15 * (high - low))
    ax.set_xlim(max(0.0, low - pad), min(100.0, high + pad / 2))
    if len(base):
        ax.axvline(base["accuracy"].mean(), color="black", linestyle="--", linewidth=1.2)
        ax.text(base["accuracy"].mean(), 0.01, " baseline", transform=ax.get_xaxis_transform(), va="bottom",
                fontsize="x-small", backgroundcolor="white")
    ax.set_xlabel("test accuracy (%)")
    ax.set_title(title_for("Grid search at φ = 1: α·β²·γ² = 2\n"
                           "(orange: the paper's α = 1.2, γ = 1.15)", is_quick(frame)))
    return fig


def equal_flops_table(results):
    """``results.compare_families`` as a table: at each phi (equal target MACs), compound minus
    each single axis in points, paired by seed, with its 95% interval and verdict, and each
    family's training seconds per run; its ``attrs["note"]`` is ``results.verdict``."""
    import pandas as pd

    rows = _results.as_rows(results)
    table = pd.DataFrame([{
        "phi": e["phi"], "single axis": e["single_axis"] + (" (best)" if e["single_axis"] == e["best_single_axis"] else ""),
        "compound - axis (points)": _number(e["mean_difference"], "{:+.2f}"),
        "95% CI": "" if e["ci_low"] is None else f"{e['ci_low']:+.2f} to {e['ci_high']:+.2f}",
        "seed pairs": e["pairs"], "verdict": e["verdict"],
        "compound s/run": _number(e["compound_seconds"], "{:.0f}"), "axis s/run": _number(e["single_seconds"], "{:.0f}"),
    } for e in _results.compare_families(rows)]).set_index(["phi", "single axis"])
    table.attrs["note"] = (f"{_results.verdict(rows)}\n(compound minus the single axis in test accuracy points, "
                           "paired by seed; 95% interval from Student's t; '(best)': the best single axis by mean, "
                           "picked after the fact; s/run: mean measured training seconds per run. The paper's "
                           f"effect: {_results.PAPER_EFFECT}.)")
    return table


def _number(value, form: str) -> str:
    return "" if value is None or value != value else form.format(value)


# --- all of them ----------------------------------------------------------------------------------

FIGURES = {
    "scaling_methods": plot_scaling,
    "scaling_per_second": lambda frame: plot_scaling(frame, against="seconds"),
    "single_axis": plot_single_axis,
    "width_at_depth_resolution": plot_width_at_dr,
    "grid_search": plot_grid,
}


def plot_all(results, out_dir: str | os.PathLike, formats: Sequence[str] = ("png",), log=print) -> list[Path]:
    """Every figure the results have data for, and the equal-FLOPs table (markdown and CSV),
    written to ``out_dir``. Returns the files written."""
    import matplotlib.pyplot as plt

    frame = to_frame(results)
    out_dir = Path(out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in FIGURES.items():
        try:
            fig = draw(frame)
        except ValueError as error:  # this table has no data for that figure
            log(f"skipped {name}: {error}")
            continue
        for fmt in formats:
            path = out_dir / f"{name}.{fmt}"
            fig.savefig(path)
            written.append(path)
        plt.close(fig)
    try:
        table = equal_flops_table(results)  # the runs that failed too: they count against stability
    except (ValueError, KeyError) as error:
        log(f"skipped equal_flops table: {error}")
    else:
        markdown = out_dir / "equal_flops.md"
        markdown.write_text(f"{table.attrs['note']}\n\n{table.to_markdown() if _has_tabulate() else table.to_string()}\n")
        csv = out_dir / "equal_flops.csv"
        table.to_csv(csv)
        written += [markdown, csv]
    for path in written:
        log(f"wrote {path}")
    return written


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401  (pandas' to_markdown needs it)
    except ImportError:
        return False
    return True


# --- shipped speed measurements (lessons 00 and 05) --------------------------------------------


def plot_time_to_accuracy(curve: Sequence[dict], *, ax=None, title: str = "", target: float | None = 0.90,
                          minutes: float | None = 5.0):
    """Test accuracy after each epoch against minutes of training (a training record's
    ``accuracy_curve``), with the target accuracy and the time budget as guide lines."""
    import matplotlib.pyplot as plt

    if not curve:
        raise ValueError("the accuracy curve is empty: no epoch finished")
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    ax.plot([p["seconds"] / 60 for p in curve], [100 * p["test_accuracy"] for p in curve], marker="o", ms=3)
    if target is not None:
        ax.axhline(100 * target, color="grey", linestyle="--", linewidth=1, label=f"{target:.0%} target")
    if minutes is not None:
        ax.axvline(minutes, color="grey", linestyle=":", linewidth=1, label=f"{minutes:g} minutes")
    ax.set(xlabel="wall time of training (minutes)", ylabel="test accuracy (%)", title=title)
    ax.grid(True, alpha=0.3)
    if target is not None or minutes is not None:
        ax.legend(loc="lower right")
    return ax.figure


def time_to_accuracy_report(folder: str | os.PathLike):
    """The figure and a one-line summary of ``benchmarks/time_to_accuracy.py``'s results in
    ``folder`` (``results.time_to_accuracy`` reads them); ``(None, why)`` when there are none."""
    found = _results.time_to_accuracy(folder)
    if found is None:
        return None, f"no time-to-accuracy results in {folder} yet"
    if not found["curve"]:
        return None, found["text"]
    return plot_time_to_accuracy(found["curve"], target=found["target"], title=found["title"]), found["text"]


# --- the command line -------------------------------------------------------------------------------


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``plots`` with ``python -m effnet_lab``'s subcommands."""
    parser = subparsers.add_parser(
        "plots", help="draw every figure from a sweep's run folders",
        description="Draw every figure (and the equal-FLOPs table) that a sweep's run records have data for.",
    )
    parser.add_argument("results", nargs="+", metavar="RESULTS",
                        help="folders of run folders (searched for record.json), or record.json files")
    parser.add_argument("--out", required=True, help="folder for the figures")
    parser.add_argument("--format", dest="formats", nargs="+", default=["png"], choices=["png", "svg", "pdf"])
    parser.set_defaults(run=main)
    return parser


def main(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")  # files only: no window
    written = plot_all(args.results, args.out, formats=args.formats)
    if not written:
        raise ValueError("nothing to draw: the results hold none of the experiments' families")
    return 0
