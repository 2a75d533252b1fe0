"""The EfficientNet family B0-B7 side by side (lesson 06).

- ``family_table()``: width, depth, resolution, parameters and multiply-adds counted on our
  own models, next to the paper's MACs and ImageNet top-1, and the latency measured on the
  device at hand (for the variants you ask for: B7 at 600 px is slow on a laptop CPU);
- ``plot_family(table)``: top-1 against parameters, MACs and measured latency;
- ``parity(variant)``: our model against torchvision's and timm's, parameter for parameter,
  and output for output after copying their weights into ours;
- ``pretrained_from_torchvision(variant)``: ImageNet weights when there is internet; ask
  ``effnet_lab.settings.is_online()`` first (a bounded check: an offline machine never hangs).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import torch

from .checks import check_choice, check_int
from .model import build, create_model, from_timm, from_torchvision
from .profile import count_macs, count_params, measure_latency
from .scaling import OFFICIAL_VARIANTS

# Tan & Le 2019 (arXiv 1905.11946 v5), Table 2: ImageNet top-1 accuracy (%) and "FLOPs",
# which are multiply-adds, in billions.
PAPER_TOP1 = {"b0": 77.1, "b1": 79.1, "b2": 80.1, "b3": 81.6, "b4": 82.9, "b5": 83.6, "b6": 84.0, "b7": 84.3}
PAPER_MACS_B = {"b0": 0.39, "b1": 0.70, "b2": 1.0, "b3": 1.8, "b4": 4.2, "b5": 9.9, "b6": 19.0, "b7": 37.0}
PAPER_SOURCE = "Tan & Le 2019, EfficientNet, arXiv 1905.11946 v5, Table 2"


def _variants(names: Iterable[str] | None) -> list[str]:
    names = list(OFFICIAL_VARIANTS) if names is None else [str(n).lower() for n in names]
    for name in names:
        check_choice("variant", name, OFFICIAL_VARIANTS)
    return names


def family_table(
    variants: Iterable[str] | None = None,
    latency_variants: Iterable[str] | None = ("b0",),
    device: torch.device | str | None = None,
    batch_size: int = 1,
    repeats: int = 3,
    progress: bool = True,
):
    """B0-B7 as a pandas DataFrame, one row per model.

    Parameters and MACs are counted on shape-only copies (fast for every variant); latency
    is measured, on ``device``, only for ``latency_variants`` (None: all of ``variants``), at
    each model's own resolution; the others get NaN.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    names = _variants(variants)
    timed = set(names if latency_variants is None else _variants(latency_variants))
    rows = []
    for name in tqdm(names, desc="B0-B7", disable=not progress):
        variant = OFFICIAL_VARIANTS[name]
        with torch.device("meta"):
            shape_only = create_model(name)
        row = {
            "model": name.upper(),
            "width": variant.width,
            "depth": variant.depth,
            "resolution": variant.resolution,
            "params (M)": count_params(shape_only) / 1e6,
            "MACs (B)": count_macs(shape_only, variant.resolution) / 1e9,
            "paper MACs (B)": PAPER_MACS_B[name],
            "paper top-1 (%)": PAPER_TOP1[name],
            "latency (ms)": float("nan"),
            "images/s": float("nan"),
        }
        if name in timed:
            timing = measure_latency(create_model(name), variant.resolution, batch_size, device, repeats=repeats)
            row["latency (ms)"] = timing["latency_ms"]
            row["images/s"] = timing["images_per_second"]
            row["device"] = timing["device"]
        rows.append(row)
    table = pd.DataFrame(rows).set_index("model")
    table.attrs["batch_size"] = batch_size
    return table


def plot_family(table):
    """Paper top-1 against our parameter and MAC counts and against the measured latency."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    timed = table.dropna(subset=["latency (ms)"])
    panels = [("params (M)", "parameters (millions, log)"), ("MACs (B)", "multiply-adds (billions, log)")]
    if len(timed):
        panels.append(("latency (ms)", f"latency at batch {table.attrs.get('batch_size', 1)} (ms, log)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), layout="constrained", sharey=True)
    for ax, (column, label) in zip(axes, panels):
        data = timed if column == "latency (ms)" else table
        ax.plot(data[column], data["paper top-1 (%)"], marker="o")
        for name, row in data.iterrows():
            ax.annotate(name, (row[column], row["paper top-1 (%)"]), textcoords="offset points", xytext=(5, -11), fontsize=9)
        ax.set(xscale="log", xlabel=label)
        ax.set_xlim(data[column].min() / 1.3, data[column].max() * 1.6)  # room for the labels
        # Plain numbers (5, 10, 20) rather than 5x10^0: readable, and they never collide.
        narrow = data[column].max() / data[column].min() < 5  # less than a decade: plain ticks
        ax.xaxis.set_major_locator(MaxNLocator(4) if narrow else LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("ImageNet top-1 (%, paper)")
    low, high = axes[0].get_ylim()
    axes[0].set_ylim(low - 0.5, high + 0.3)  # room for the labels under the points
    if len(timed):
        axes[-1].set_title(f"measured on {timed['device'].iloc[0]}", fontsize=10)
    fig.suptitle(f"EfficientNet B0-B7: accuracy from {PAPER_SOURCE}; sizes counted here", fontsize=11)
    return fig


# --- parity with torchvision and timm ------------------------------------------------------


def parity(variant: str = "b0", resolution: int | None = None, batch_size: int = 2, seed: int = 0) -> list[dict]:
    """Our model against torchvision's and timm's: parameters, and outputs after weight transfer.

    Both libraries' models are freshly (randomly) initialised: copying *their* weights into
    our architecture and getting the same outputs shows that the two networks compute the
    same function, layer for layer. Pretrained weights travel the same way.
    """
    import timm
    import torchvision

    name = _variants([variant])[0]
    resolution = resolution or OFFICIAL_VARIANTS[name].resolution
    theirs = {
        "torchvision": (getattr(torchvision.models, f"efficientnet_{name}")(), from_torchvision),
        "timm": (timm.create_model(f"efficientnet_{name}", pretrained=False), from_timm),
    }
    x = torch.randn(batch_size, 3, resolution, resolution, generator=torch.Generator().manual_seed(seed))
    rows = []
    for library, (model, convert) in theirs.items():
        ours = convert(model)
        model.eval(), ours.eval()
        with torch.no_grad():
            difference = (model(x) - ours(x)).abs().max().item()
        rows.append(
            {
                "library": library,
                "their params": count_params(model),
                "our params": count_params(ours),
                "max |output difference|": difference,
            }
        )
    return rows


# --- ImageNet weights, when online ----------------------------------------------------------


def pretrained_from_torchvision(variant: str = "b0", num_classes: int | None = None):
    """Our EfficientNet with torchvision's ImageNet weights (downloads them: needs internet).

    With ``num_classes``, the 1000-class ImageNet classifier is replaced by a fresh linear
    layer for fine-tuning. Ask ``settings.is_online()`` first: offline, the download fails.
    """
    import torchvision

    name = _variants([variant])[0]
    weights = torchvision.models.get_model_weights(f"efficientnet_{name}").DEFAULT
    model = from_torchvision(getattr(torchvision.models, f"efficientnet_{name}")(weights=weights))
    if num_classes is None:
        return model
    # Same network with a fresh classifier: every tensor but the last linear layer's is copied.
    new_model = build(replace(model.config, num_classes=check_int("num_classes", num_classes, minimum=1)))
    state = {key: value for key, value in model.state_dict().items() if not key.startswith("classifier.")}
    new_model.load_state_dict(state, strict=False)
    return new_model
