"""Every figure of the scaling experiments, drawn from a results table (lessons 04-06).

A results table is what ``effnet_lab.experiments`` writes: one JSON line per training run,
in one file or in a folder of shard files. Each function here takes such a table (a path,
a list of rows or a pandas DataFrame) and returns a matplotlib Figure:

- ``plot_scaling``: accuracy against MACs (log scale) for each way of scaling, with the
  spread over seeds as a band (the analogue of the paper's Figure 8);
- ``plot_single_axis``: width, depth and resolution scaling side by side, each point marked
  with its multiplier (Figure 3), and where resolution stops adding information;
- ``plot_width_at_dr``: width scaling at fixed depth and resolution (Figure 4);
- ``plot_grid``: the alpha/beta/gamma grid search, ranked by accuracy (the paper's step 2);
- ``equal_flops_table``: the comparison at equal MACs as a table (the paper's Table 3).

The lessons read what ships in ``results/`` through ``shipped_scaling`` (which table to plot,
and its label), ``throughput_table`` (effnet_lab against timm and torchvision) and
``time_to_accuracy_report`` (B0's accuracy against wall time, ``plot_time_to_accuracy``).

``plot_all(results, out_dir)`` writes every figure the table has data for;
``python -m effnet_lab plots RESULTS --out DIR`` does the same from the command line.
Figures made from quick-mode runs say so in their title: those numbers mean nothing.

``style()`` is the look every lesson's figures share (seaborn, larger fonts). matplotlib,
seaborn and pandas are imported inside the functions: the package does not need them to train.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

SINGLE_AXES = ("width", "depth", "resolution")
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


# --- the table --------------------------------------------------------------------------------


def to_frame(results):
    """A pandas DataFrame of results: from a DataFrame, a list of rows, or paths to tables."""
    import pandas as pd

    from .experiments import read_results

    if isinstance(results, pd.DataFrame):
        frame = results.copy()
    elif isinstance(results, (str, os.PathLike)):
        frame = pd.DataFrame(read_results(results))
    elif isinstance(results, Sequence) and all(isinstance(item, (str, os.PathLike)) for item in results) and results:
        frame = pd.DataFrame(read_results(*results))
    elif isinstance(results, Sequence) and all(isinstance(item, dict) for item in results):
        frame = pd.DataFrame(list(results))
    else:
        raise TypeError("results must be a path to a results table (file or folder), a list of rows, "
                        f"or a pandas DataFrame; got {type(results).__name__}")
    if frame.empty:
        raise ValueError("the results table is empty: run a sweep first (python -m effnet_lab sweep compare --quick)")
    missing = {"run_id", "family", "test_accuracy", "macs"} - set(frame.columns)
    if missing:
        raise ValueError(f"these rows are not sweep results: columns {sorted(missing)} are missing")
    frame = frame[frame["test_accuracy"].notna()].copy()  # runs that failed (a diverged loss) have no accuracy
    if frame.empty:
        raise ValueError("no run in these results finished with an accuracy (every run failed)")
    scales = {str(b) for b in frame["baseline"]} if "baseline" in frame else set()
    quick = set(frame["quick_mode"].astype(bool)) if "quick_mode" in frame else {False}
    if len(scales) > 1 or len(quick) > 1:
        raise ValueError("these results mix sweeps of different scales (different baselines or quick and full "
                         "mode): plot each scale's table separately")
    precisions = set(frame["precision"].dropna()) if "precision" in frame else set()
    if len(precisions) > 1:  # one model's fp32 and bf16 runs would be averaged as if they were seeds
        raise ValueError(f"these results mix precisions ({', '.join(sorted(precisions))}): plot each precision's "
                         "table separately")
    frame["accuracy"] = 100 * frame["test_accuracy"].astype(float)
    frame["mmacs"] = frame["macs"].astype(float) / 1e6
    return frame


def is_quick(frame) -> bool:
    return bool("quick_mode" in frame and frame["quick_mode"].astype(bool).any())


def _by_model(frame):
    """Mean, min, max and count of accuracy over seeds, one row per (family, phi, model)."""
    keys = [k for k in ("family", "phi", "width", "depth", "resolution") if k in frame]
    grouped = frame.groupby(keys, dropna=False).agg(
        accuracy=("accuracy", "mean"), low=("accuracy", "min"), high=("accuracy", "max"),
        std=("accuracy", "std"), seeds=("accuracy", "size"), mmacs=("mmacs", "mean"),
        macs_factor=("macs_factor", "mean"), upsampled=("upsampled", "max"),
    )
    return grouped.reset_index()


def _family_curve(models, family: str):
    """The baseline and ``family``'s models, in order of cost: every family's curve starts at phi = 0."""
    return models[models["family"].isin(["baseline", family])].sort_values("mmacs")


def _log_mmacs_axis(ax) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=2, subs=(1.0, 1.5)))  # 16, 24, 32, 48: labels on a narrow range too
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.set_xlabel("multiply-adds per image (millions, log scale)")


def _draw_curve(ax, curve, color, marker, label) -> None:
    ax.plot(curve["mmacs"], curve["accuracy"], color=color, marker=None, linewidth=2, label=None, zorder=2)
    native = curve[~curve["upsampled"].astype(bool)]
    upsampled = curve[curve["upsampled"].astype(bool)]
    ax.scatter(native["mmacs"], native["accuracy"], color=color, marker=marker, s=55, zorder=3, label=label)
    if len(upsampled):
        ax.scatter(upsampled["mmacs"], upsampled["accuracy"], facecolors="white", edgecolors=color,
                   marker=marker, s=55, linewidths=1.8, zorder=3)
    if (curve["seeds"] > 1).any():
        ax.fill_between(curve["mmacs"], curve["low"], curve["high"], color=color, alpha=0.18, linewidth=0, zorder=1)


# --- the figures ----------------------------------------------------------------------------------


def plot_scaling(results, *, ax=None, families: Sequence[str] = FAMILY_ORDER):
    """Accuracy against MACs for each way of scaling the baseline (the paper's Figure 8)."""
    import matplotlib.pyplot as plt

    style()
    frame = to_frame(results)
    models = _by_model(frame)
    present = [f for f in families if (models["family"] == f).any()]
    if not present:
        raise ValueError(f"no rows of the families {list(families)} in these results")
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(9.5, 5), layout="constrained")
    for family in present:
        label = "compound (α, β, γ = 1.2, 1.1, 1.15)" if family == "compound" else f"{family} only"
        _draw_curve(ax, _family_curve(models, family), FAMILY_COLORS[family], FAMILY_MARKERS[family], label)
    baseline = models[models["family"] == "baseline"]
    if len(baseline):
        ax.scatter(baseline["mmacs"], baseline["accuracy"], color="black", marker="*", s=160, zorder=4,
                   label="baseline (φ = 0)")
    _log_mmacs_axis(ax)
    ax.set_ylabel("test accuracy (%)")
    seeds = int(models["seeds"].max())
    notes = [f"band: range over {seeds} seeds" if seeds > 1 else "one seed per model"]
    if models["upsampled"].astype(bool).any():
        notes.append(f"hollow: input upsampled\nbeyond CIFAR's {NATIVE_RESOLUTION} px")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small", title="\n".join(notes),
              title_fontsize="x-small", alignment="left")
    ax.set_title(title_for("Scaling the baseline: one dimension or all three", is_quick(frame)))
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
    """Accuracy of each family at each phi (equal target MACs), with the seed spread and the
    MACs actually counted; the last columns: compound minus the best single axis."""
    import pandas as pd

    frame = to_frame(results)
    models = _by_model(frame)
    models = models[models["family"].isin(FAMILY_ORDER) & (models["phi"] > 0)]
    if models.empty:
        raise ValueError("no scaled models (width, depth, resolution, compound) in these results")
    table = []
    for phi, group in models.groupby("phi"):
        row = {"phi": phi, "target MACs": f"{2 ** phi:.3g}x"}
        best_single = compound = None  # rows of _by_model
        for family in FAMILY_ORDER:
            member = group[group["family"] == family]
            if member.empty:
                row[family] = ""
                continue
            m = member.iloc[0]
            spread = f" ± {m['std']:.2f}" if m["seeds"] > 1 else ""
            row[family] = f"{m['accuracy']:.2f}{spread} ({m['macs_factor']:.2f}x)"
            if family == "compound":
                compound = m
            elif family in SINGLE_AXES and (best_single is None or m["accuracy"] > best_single["accuracy"]):
                best_single = m
        if best_single is not None and compound is not None:
            row["compound - best single"] = (f"{compound['accuracy'] - best_single['accuracy']:+.2f} "
                                             f"(vs {best_single['family']})")
            row["beyond the seed spread?"] = seed_verdict(compound, best_single)
        table.append(row)
    result = pd.DataFrame(table).set_index("phi")
    result.attrs["note"] = ("test accuracy in %, mean ± standard deviation over seeds, (counted MACs / baseline "
                            "MACs); the best single axis is picked after the fact, which favours it when the "
                            "seeds spread widely" + ("; QUICK MODE: meaningless numbers" if is_quick(frame) else ""))
    return result


def seed_verdict(compound, single) -> str:
    """Whether compound scaling's seeds all land above (or all below) the single axis's.

    ``compound`` and ``single``: rows of ``_by_model`` (with ``low``, ``high``, ``seeds``).
    With two seeds a mean difference smaller than the spread says nothing: the seed ranges
    must not overlap before a difference counts.
    """
    if min(compound["seeds"], single["seeds"]) < 2:
        return "one seed: no spread to judge by"
    if compound["low"] > single["high"]:
        return "yes: compound ahead (every seed)"
    if compound["high"] < single["low"]:
        return "yes: compound behind (every seed)"
    return "no: a tie, the seed ranges overlap"


# --- all of them ----------------------------------------------------------------------------------

FIGURES = {
    "scaling_methods": plot_scaling,
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
        table = equal_flops_table(frame)
    except ValueError as error:
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


def throughput_table(*paths: str | os.PathLike):
    """One row per measured configuration from ``benchmarks/throughput.py`` JSON files (or
    folders of them): images per second of effnet_lab, timm and torchvision, and effnet_lab's
    ratio to the faster of the two (the target is at least 1.0 on a GPU)."""
    import pandas as pd

    missing = [str(path) for path in paths if not Path(path).exists()]
    if missing:
        raise FileNotFoundError(f"no such file or folder: {', '.join(missing)}")
    files = [f for path in map(Path, paths) for f in (sorted(path.glob("throughput*.json")) if path.is_dir() else [path])]
    rows = []
    for file in files:
        measured = json.loads(file.read_text())
        for result in measured["results"]:
            speed = result["images_per_second"]
            rows.append({
                "device": measured["device"], "config": f"{result['config']} ({result['resolution']} px)",
                "batch": result["batch_size"], "precision": result["precision"],
                "compiled": result["compile"], **{f"{name} (img/s)": round(v, 1) for name, v in speed.items()},
                "vs faster peer": round(speed["effnet_lab"] / max(speed["timm"], speed["torchvision"]), 3),
                "date": measured["date"][:10], "file": file.name,
            })
    if not rows:
        raise ValueError(f"no throughput measurements in {', '.join(map(str, paths))}")
    return pd.DataFrame(rows)


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


def shipped_scaling(shipped_root: str | os.PathLike | None, experiment: str = "compare"):
    """The shipped results table of ``experiment`` a lesson should plot, and its label.

    The full-scale GPU table (``scaling-gpu/``) when there is one, named by its GPU and, while
    its sweep is unfinished, by how many runs are in; else the CPU quick-mode table
    (``scaling-quick/``); else ``None`` and why.
    """
    if shipped_root is None:
        return None, "no shipped results here: they are in the project's results/ folder (clone it to plot them)"
    gpu = Path(shipped_root) / "scaling-gpu" / experiment
    if (gpu / "results.jsonl").exists():
        frame = to_frame(gpu)
        devices = ", ".join(sorted(set(frame["device"].dropna())))
        precision = ", ".join(sorted(set(frame["precision"].dropna()))) if "precision" in frame else ""
        label = f"shipped: full scale on {devices}" + (f", {precision}" if precision else "")
        status = gpu / "status.json"  # written by every chunk of benchmarks/gpu_scaling_sweep.py
        progress = json.loads(status.read_text()) if status.exists() else {"left": 0}
        if progress["left"]:
            label += f" ({progress['runs'] - progress['left']} of {progress['runs']} runs so far)"
        return gpu, label
    quick = Path(shipped_root) / "scaling-quick" / experiment
    if quick.is_dir():
        return quick, "shipped: CPU quick mode (the full-scale GPU results are not in results/scaling-gpu/ yet)"
    return None, f"no shipped {experiment} results in {shipped_root}"


def time_to_accuracy_report(folder: str | os.PathLike):
    """The figure and a one-line summary of ``benchmarks/time_to_accuracy.py``'s results in ``folder``.

    The finished run (``summary.json``) when there is one; else the latest interrupted attempt
    (``partial.json``, in ``folder`` or an ``attempt-*`` folder), labelled as such; else
    ``(None, why)``.
    """
    folder = Path(folder)
    if (folder / "summary.json").exists():
        summary = json.loads((folder / "summary.json").read_text())
        record = json.loads((folder / "run" / "record.json").read_text())
        smoke = " [tiny smoke test: not a result]" if summary["tiny_smoke_test"] else ""
        fig = plot_time_to_accuracy(record["accuracy_curve"], target=summary["target_accuracy"],
                                    title=f"B0, cifar stem, on {summary['device']}{smoke}")
        target = f"{summary['target_accuracy']:.0%}"
        reached = (f"{target} after {summary['seconds_to_target']:.0f} s" if summary["seconds_to_target"] is not None
                   else f"{target} not reached")
        text = (f"{reached}; final {summary['final_test_accuracy']:.2%} on {summary['test_set']} after "
                f"{summary['train_seconds']:.0f} s of training ({summary['epochs']} epochs; data: "
                f"{summary['data_source']}; {summary['date'][:10]}){smoke}")
        return fig, text
    partials = sorted(folder.glob("partial.json")) + sorted(folder.glob("attempt-*/partial.json"), reverse=True)
    if not partials:
        return None, f"no time-to-accuracy results in {folder} yet"
    partial = json.loads(partials[0].read_text())
    curve = partial["accuracy_curve"]
    if not curve:
        return None, f"{partials[0]}: interrupted before its first checkpoint"
    label = f"INTERRUPTED after epoch {partial['epochs_done']} of {partial['epochs_planned']}"
    fig = plot_time_to_accuracy(curve, target=partial["target_accuracy"],
                                title=f"B0, cifar stem, on {partial.get('device', '?')}: {label}")
    target = f"{partial['target_accuracy']:.0%}"
    reached = (f"{target} first after {partial['seconds_to_target']:.0f} s (epoch {partial['epoch_reaching_target']})"
               if partial["seconds_to_target"] is not None else f"{target} not reached")
    best = max(curve, key=lambda point: point["test_accuracy"])
    text = (f"{label} ({partials[0].parent.name}): {reached}; best {best['test_accuracy']:.2%} (epoch {best['epoch']}, "
            f"{best['seconds']:.0f} s); stopped after {curve[-1]['seconds']:.0f} s; "
            f"data: {partial.get('data_source', '?')}; {partial.get('run_date', partial['date'])[:10]}")
    return fig, text


# --- the command line -------------------------------------------------------------------------------


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``plots`` with ``python -m effnet_lab``'s subcommands."""
    parser = subparsers.add_parser(
        "plots", help="draw every figure from a results table",
        description="Draw every figure (and the equal-FLOPs table) that a sweep's results table has data for.",
    )
    parser.add_argument("results", nargs="+", metavar="RESULTS",
                        help="results tables: .jsonl files or folders of them (shards are merged)")
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
