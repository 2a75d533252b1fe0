"""The compound-scaling explorer (lesson 04): move phi, watch the network grow.

``scaled_network(phi, alpha, beta, gamma)`` does the arithmetic: the three multipliers, the
input size, the channels and repeats of every stage *after rounding*, and the parameters
and multiply-adds of the network those numbers build (counted with ``effnet_lab.profile``
on a shape-only copy, so even phi = 7 takes about a second).

Three ways to look at it:

- ``explorer_table([0, 1, 2, 3])``: a pandas table, one row per phi (works everywhere,
  including static renders and CI);
- ``draw_stages(network)``: a drawing of the stages to scale, next to B0's outline;
- ``PhiExplorer()``: ipywidgets sliders for phi, alpha, beta and gamma that update the
  numbers, the per-stage table and the drawing when a slider moves.

The explorer's numbers are HTML with a stable structure, so a browser test can read them:
``<table class="effnet-explorer">`` has one ``<td data-field=NAME data-value=NUMBER>`` per
quantity (``FIELDS``), ``<table class="effnet-explorer-stages">`` has one
``<tr data-stage=N>`` per stage with ``data-field`` cells ``channels`` and ``repeats``.
"""

from __future__ import annotations

import html
import io
from dataclasses import dataclass
from functools import lru_cache

import torch

from .checks import check_int, check_number
from .model import EfficientNet, EfficientNetConfig, StageSpec
from .profile import count_macs, count_params
from .scaling import CompoundScaling, round_resolution


@dataclass(frozen=True)
class ScaledNetwork:
    """B0 scaled by compound coefficient ``phi``: multipliers, rounded shape and cost."""

    phi: float
    alpha: float
    beta: float
    gamma: float
    depth: float  # alpha ** phi
    width: float  # beta ** phi
    resolution_multiplier: float  # gamma ** phi
    resolution: int  # base_resolution * gamma ** phi, to the nearest pixel
    base_resolution: int
    flops_factor: float  # (alpha * beta^2 * gamma^2) ** phi: the formula's cost growth
    config: EfficientNetConfig
    stages: tuple[StageSpec, ...]  # after rounding
    params: int
    macs: int

    @property
    def constraint(self) -> float:
        """alpha * beta^2 * gamma^2 (the paper wants about 2)."""
        return self.alpha * self.beta**2 * self.gamma**2

    @property
    def blocks(self) -> int:
        return sum(stage.repeats for stage in self.stages)


@lru_cache(maxsize=256)
def _params_and_macs(config: EfficientNetConfig, resolution: int) -> tuple[int, int]:
    # The meta device holds shapes only: no memory, no arithmetic, no initialisation cost.
    with torch.device("meta"):
        model = EfficientNet(config)
    return count_params(model), count_macs(model, resolution)


def scaled_network(
    phi: float,
    alpha: float = 1.2,
    beta: float = 1.1,
    gamma: float = 1.15,
    base_resolution: int = 224,
    stem: str = "imagenet",
    num_classes: int = 1000,
) -> ScaledNetwork:
    """The network at compound coefficient ``phi``, built exactly as ``effnet_lab.efficientnet``
    would build it with width ``beta**phi`` and depth ``alpha**phi``."""
    scaling = CompoundScaling(alpha, beta, gamma)
    phi = check_number("phi", phi, minimum=0.0)
    base_resolution = check_int("base_resolution", base_resolution, minimum=1)
    depth, width, resolution_multiplier = scaling.multipliers(phi)
    config = EfficientNetConfig(width=width, depth=depth, stem=stem, num_classes=num_classes)
    resolution = max(round_resolution(resolution_multiplier, base_resolution), config.min_resolution)
    params, macs = _params_and_macs(config, resolution)
    return ScaledNetwork(
        phi=phi,
        alpha=scaling.alpha,
        beta=scaling.beta,
        gamma=scaling.gamma,
        depth=depth,
        width=width,
        resolution_multiplier=resolution_multiplier,
        resolution=resolution,
        base_resolution=base_resolution,
        flops_factor=scaling.flops_factor(phi),
        config=config,
        stages=tuple(config.scaled_stages()),
        params=params,
        macs=macs,
    )


# The explorer's quantities: (data-field name, label, how to show the value).
FIELDS: tuple[tuple[str, str], ...] = (
    ("phi", "phi"),
    ("constraint", "alpha * beta^2 * gamma^2"),
    ("depth", "depth multiplier d = alpha^phi"),
    ("width", "width multiplier w = beta^phi"),
    ("resolution_multiplier", "resolution multiplier r = gamma^phi"),
    ("resolution", "input resolution (px)"),
    ("blocks", "MBConv blocks"),
    ("params", "parameters"),
    ("macs", "multiply-adds (MACs)"),
    ("flops_factor", "FLOPs x baseline, formula (alpha beta^2 gamma^2)^phi"),
    ("macs_factor", "MACs x baseline, measured"),
)


def network_values(network: ScaledNetwork, baseline: ScaledNetwork | None = None) -> dict[str, float | int]:
    """The explorer's numbers as a flat dictionary keyed by ``FIELDS`` names."""
    baseline = baseline or scaled_network(0, network.alpha, network.beta, network.gamma, network.base_resolution, network.config.stem)
    return {
        "phi": network.phi,
        "constraint": network.constraint,
        "depth": network.depth,
        "width": network.width,
        "resolution_multiplier": network.resolution_multiplier,
        "resolution": network.resolution,
        "blocks": network.blocks,
        "params": network.params,
        "macs": network.macs,
        "flops_factor": network.flops_factor,
        "macs_factor": network.macs / baseline.macs,
    }


def _human(field: str, value: float | int) -> str:
    if field == "params":
        return f"{value / 1e6:.2f} M"
    if field == "macs":
        return f"{value / 1e9:.3f} B"
    if field in ("resolution", "blocks"):
        return str(int(value))
    if field == "phi":
        return f"{value:.2f}"
    if field.endswith("factor"):
        return f"{value:.2f}x"
    return f"{value:.3f}"


def explorer_table(
    phis=(0, 1, 2, 3),
    alpha: float = 1.2,
    beta: float = 1.1,
    gamma: float = 1.15,
    base_resolution: int = 224,
    stem: str = "imagenet",
):
    """One row per phi with the explorer's numbers, as a pandas DataFrame (the static view)."""
    import pandas as pd

    baseline = scaled_network(0, alpha, beta, gamma, base_resolution, stem)
    rows = []
    for phi in phis:
        values = network_values(scaled_network(phi, alpha, beta, gamma, base_resolution, stem), baseline)
        rows.append(
            {
                "phi": values["phi"],
                "depth d": round(values["depth"], 3),
                "width w": round(values["width"], 3),
                "resolution (px)": values["resolution"],
                "blocks": values["blocks"],
                "params (M)": round(values["params"] / 1e6, 2),
                "MACs (B)": round(values["macs"] / 1e9, 3),
                "MACs x B0 (measured)": round(values["macs_factor"], 2),
                "FLOPs x B0 (formula)": round(values["flops_factor"], 2),
            }
        )
    return pd.DataFrame(rows).set_index("phi")


def stage_table(network: ScaledNetwork):
    """Per stage: kernel, stride, and the channels and repeats before and after scaling."""
    import pandas as pd

    rows = [
        {
            "stage": index,
            "kernel": scaled.kernel_size,
            "stride": scaled.stride,
            "channels (B0)": base.channels,
            "channels": scaled.channels,
            "repeats (B0)": base.repeats,
            "repeats": scaled.repeats,
        }
        for index, (base, scaled) in enumerate(zip(network.config.stages, network.stages), start=1)
    ]
    return pd.DataFrame(rows).set_index("stage")


# --- the drawing ----------------------------------------------------------------------------


def draw_stages(network: ScaledNetwork, fig=None, limits: tuple[float, float, float] | None = None):
    """The input image and the MBConv stages to scale, with B0's outline dashed.

    Left: the input, a square ``resolution`` pixels a side. Right: each stage a box as wide
    as its number of blocks and as tall as its channels. ``limits`` (max resolution, max
    blocks, max channels) fixes the axes, so that a slider changes the boxes, not the scale.
    Pass a ``matplotlib.figure.Figure`` as ``fig`` to draw off-screen (the widget does).
    """
    from matplotlib.patches import Rectangle

    if fig is None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(10, 3.6))
    image_ax, stage_ax = fig.subplots(1, 2, width_ratios=[1, 3])
    fig.set_layout_engine("constrained")
    base = scaled_network(0, network.alpha, network.beta, network.gamma, network.base_resolution, network.config.stem)
    max_resolution, max_blocks, max_channels = limits or (network.resolution, network.blocks, max(s.channels for s in network.stages))
    colours = [f"C{i}" for i in range(len(network.stages))]

    image_ax.add_patch(Rectangle((0, 0), network.resolution, network.resolution, color="0.6", alpha=0.6))
    image_ax.add_patch(Rectangle((0, 0), base.resolution, base.resolution, fill=False, linestyle="--", color="k"))
    side = max(max_resolution, base.resolution) * 1.05
    image_ax.set(xlim=(0, side), ylim=(0, side), aspect="equal", xlabel="pixels", ylabel="pixels")
    image_ax.set_title(f"input {network.resolution} x {network.resolution} px", fontsize=11)

    start = 0
    for stage, colour in zip(network.stages, colours):
        stage_ax.add_patch(Rectangle((start, 0), stage.repeats, stage.channels, color=colour, alpha=0.75))
        start += stage.repeats
    start = 0
    for stage in base.stages:  # B0's outline
        stage_ax.add_patch(Rectangle((start, 0), stage.repeats, stage.channels, fill=False, linestyle="--", color="k"))
        start += stage.repeats
    stage_ax.set(
        xlim=(0, max(max_blocks, base.blocks) * 1.02),
        ylim=(0, max(max_channels, *(s.channels for s in base.stages)) * 1.12),
        xlabel="MBConv blocks (each box: one stage; width = repeats)",
        ylabel="channels",
    )
    stage_ax.set_title(
        f"$\\phi$ = {network.phi:.2f}: {network.blocks} blocks, {network.params / 1e6:.1f} M params, "
        f"{network.macs / 1e9:.2f} B MACs (dashed: B0)",
        fontsize=11,
    )
    return fig


def _limits(network: ScaledNetwork, phi_max: float) -> tuple[float, float, float]:
    """Axis limits that fit the network at ``phi_max`` (shapes only: no counting)."""
    scaling = CompoundScaling(network.alpha, network.beta, network.gamma)
    depth, width, resolution = scaling.multipliers(phi_max)
    config = EfficientNetConfig(width=width, depth=depth, stem=network.config.stem)
    stages = config.scaled_stages()
    return (
        round_resolution(resolution, network.base_resolution),
        sum(s.repeats for s in stages),
        max(s.channels for s in stages),
    )


# --- the widget ---------------------------------------------------------------------------


def values_html(values: dict[str, float | int]) -> str:
    """The numbers as ``<table class="effnet-explorer">`` with ``data-field``/``data-value`` cells."""
    rows = "".join(
        f'<tr><th style="text-align:left;padding-right:1em">{html.escape(label)}</th>'
        f'<td data-field="{field}" data-value="{values[field]!r}" style="text-align:right">'
        f"{_human(field, values[field])}</td></tr>"
        for field, label in FIELDS
    )
    return f'<table class="effnet-explorer">{rows}</table>'


def stages_html(network: ScaledNetwork) -> str:
    """Per-stage channels and repeats as ``<table class="effnet-explorer-stages">``."""
    head = "<tr><th>stage</th><th>kernel</th><th>stride</th><th>channels</th><th>repeats</th></tr>"
    rows = "".join(
        f'<tr data-stage="{i}"><td>{i}</td><td>{s.kernel_size}</td><td>{s.stride}</td>'
        f'<td data-field="channels" data-value="{s.channels}">{s.channels}</td>'
        f'<td data-field="repeats" data-value="{s.repeats}">{s.repeats}</td></tr>'
        for i, s in enumerate(network.stages, start=1)
    )
    return f'<table class="effnet-explorer-stages">{head}{rows}</table>'


class PhiExplorer:
    """Sliders for phi, alpha, beta, gamma; the numbers, the stages and a drawing follow them.

    Display it by leaving it as the last expression of a cell. Everything it shows is also
    readable from Python: ``values()`` (the numbers), ``network`` (the ``ScaledNetwork``),
    ``table_html.value`` and ``stages_html.value`` (the rendered HTML).
    """

    def __init__(
        self,
        phi: float = 0.0,
        alpha: float = 1.2,
        beta: float = 1.1,
        gamma: float = 1.15,
        base_resolution: int = 224,
        phi_max: float = 7.0,
        stem: str = "imagenet",
        draw: bool = True,
    ) -> None:
        try:
            import ipywidgets as widgets
        except ImportError as error:  # a front-end extra: the tables work without it
            raise ImportError("PhiExplorer needs ipywidgets: pip install ipywidgets (or use explorer_table)") from error
        self.base_resolution = check_int("base_resolution", base_resolution, minimum=1)
        self.phi_max = check_number("phi_max", phi_max, exclusive_minimum=0.0)
        self.stem = stem
        self.draw = draw

        def slider(name: str, value: float, low: float, high: float, step: float) -> widgets.FloatSlider:
            control = widgets.FloatSlider(
                value=value, min=low, max=high, step=step, description=name,
                readout_format=".2f", continuous_update=False,  # counting MACs takes up to a second
                style={"description_width": "4em"}, layout={"width": "25em"},  # room for "gamma"
            )
            control.add_class(f"effnet-explorer-{name}")
            return control

        self.phi_slider = slider("phi", phi, 0.0, self.phi_max, 0.1)
        self.alpha_slider = slider("alpha", alpha, 1.0, 2.0, 0.01)
        self.beta_slider = slider("beta", beta, 1.0, 2.0, 0.01)
        self.gamma_slider = slider("gamma", gamma, 1.0, 2.0, 0.01)
        self.table_html = widgets.HTML()
        self.stages_html = widgets.HTML()
        self.drawing = widgets.Image(format="png", layout={"width": "48em"})
        self.table_html.add_class("effnet-explorer-values")
        self.stages_html.add_class("effnet-explorer-stage-table")
        self.drawing.add_class("effnet-explorer-drawing")
        self.widget = widgets.VBox(
            [
                widgets.HBox([widgets.VBox([self.phi_slider, self.alpha_slider, self.beta_slider, self.gamma_slider]), self.table_html]),
                widgets.HBox([self.drawing, self.stages_html]),
            ]
        )
        self.widget.add_class("effnet-explorer-root")
        for control in self.sliders:
            control.observe(self._on_change, names="value")
        self.update()

    @property
    def sliders(self) -> tuple:
        return (self.phi_slider, self.alpha_slider, self.beta_slider, self.gamma_slider)

    def _on_change(self, change: dict) -> None:
        self.update()

    def update(self) -> None:
        """Recompute the network for the sliders' values and refresh everything shown."""
        self.network = scaled_network(
            self.phi_slider.value,
            self.alpha_slider.value,
            self.beta_slider.value,
            self.gamma_slider.value,
            self.base_resolution,
            self.stem,
        )
        self.table_html.value = values_html(self.values())
        self.stages_html.value = stages_html(self.network)
        if self.draw:
            self.drawing.value = self.render_png()

    def values(self) -> dict[str, float | int]:
        """The numbers currently shown, keyed by ``FIELDS`` names."""
        return network_values(self.network)

    def render_png(self) -> bytes:
        """The drawing as PNG bytes, made off-screen (no pyplot: nothing leaks into the notebook)."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(9, 3.2), dpi=90)
        draw_stages(self.network, fig, limits=_limits(self.network, self.phi_max))
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        return buffer.getvalue()

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
