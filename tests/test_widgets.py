"""Lesson 04's explorer: the numbers, the static table, and the real ipywidgets control driven
from Python (no browser): moving the phi slider changes the rendered numbers to the right ones."""

import math
from html.parser import HTMLParser

import matplotlib

matplotlib.use("Agg")

import pytest

from effnet_lab import count_macs, count_params, efficientnet, efficientnet_b0
from effnet_lab import widgets as explorer


class CellReader(HTMLParser):
    """Collects data-field -> data-value of the explorer's table, and the tables' classes."""

    def __init__(self) -> None:
        super().__init__()
        self.values, self.classes, self.stages = {}, [], {}
        self._stage = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.classes.append(attrs.get("class"))
        if tag == "tr" and "data-stage" in attrs:
            self._stage = int(attrs["data-stage"])
            self.stages[self._stage] = {}
        if tag == "td" and "data-field" in attrs:
            target = self.stages[self._stage] if self._stage is not None else self.values
            target[attrs["data-field"]] = float(attrs["data-value"])


def read(html: str) -> CellReader:
    reader = CellReader()
    reader.feed(html)
    return reader


def test_phi_zero_is_b0():
    b0 = efficientnet_b0()
    network = explorer.scaled_network(0)
    assert (network.resolution, network.blocks) == (224, 16)
    assert network.params == count_params(b0)
    assert network.macs == count_macs(b0, 224)


def test_phi_one_matches_the_model_built_with_those_multipliers():
    network = explorer.scaled_network(1)
    model = efficientnet(width=1.1, depth=1.2)
    assert network.resolution == round(224 * 1.15) == 258
    assert network.params == count_params(model)
    assert network.macs == count_macs(model, 258)
    assert network.flops_factor == pytest.approx(1.2 * 1.1**2 * 1.15**2)
    # Repeats are rounded up: ceil(1.2 * r) for each of B0's stages.
    assert [s.repeats for s in network.stages] == [math.ceil(1.2 * r) for r in (1, 2, 2, 3, 3, 4, 1)]


def test_static_table_has_one_row_per_phi():
    table = explorer.explorer_table([0, 1, 2])
    assert list(table.index) == [0, 1, 2]
    assert list(table["resolution (px)"]) == [224, 258, round(224 * 1.15**2)]
    assert table["params (M)"].is_monotonic_increasing and table["MACs (B)"].is_monotonic_increasing
    assert table.loc[0, "MACs x B0 (measured)"] == 1.0


def test_stage_table_shows_before_and_after():
    table = explorer.stage_table(explorer.scaled_network(2))
    assert list(table["channels (B0)"]) == [16, 24, 40, 80, 112, 192, 320]
    assert list(table["repeats"]) == [math.ceil(1.44 * r - 1e-9) for r in (1, 2, 2, 3, 3, 4, 1)]


def test_the_widget_follows_its_phi_slider():
    ipywidgets = pytest.importorskip("ipywidgets")
    ui = explorer.PhiExplorer(draw=False)
    assert isinstance(ui.phi_slider, ipywidgets.FloatSlider)
    before = read(ui.table_html.value)
    assert before.classes == ["effnet-explorer"]
    assert before.values["resolution"] == 224 and before.values["phi"] == 0

    ui.phi_slider.value = 1.0  # what a student's drag does, through the same traitlets event
    after = read(ui.table_html.value)
    model = efficientnet(width=1.1, depth=1.2)
    assert after.values["resolution"] == 258
    assert after.values["params"] == count_params(model)
    assert after.values["macs"] == count_macs(model, 258)
    assert after.values["depth"] == pytest.approx(1.2) and after.values["width"] == pytest.approx(1.1)
    assert after.values["macs_factor"] == pytest.approx(count_macs(model, 258) / before.values["macs"])
    assert ui.values()["params"] == after.values["params"]

    stages = read(ui.stages_html.value)
    assert stages.classes == ["effnet-explorer-stages"]
    assert [stages.stages[i]["repeats"] for i in range(1, 8)] == [s.repeats for s in ui.network.stages]
    assert stages.stages[7]["channels"] == ui.network.stages[-1].channels


def test_the_constants_sliders_change_the_numbers():
    pytest.importorskip("ipywidgets")
    ui = explorer.PhiExplorer(phi=1.0, draw=False)
    ui.alpha_slider.value = 1.0  # no depth scaling: B0's 16 blocks
    ui.gamma_slider.value = 1.0  # no resolution scaling
    values = read(ui.table_html.value).values
    assert values["blocks"] == 16 and values["resolution"] == 224
    assert values["constraint"] == pytest.approx(1.0 * 1.1**2 * 1.0)
    assert values["params"] == count_params(efficientnet(width=1.1, depth=1.0))


def test_the_drawing_is_a_png_that_changes_with_phi():
    pytest.importorskip("ipywidgets")
    ui = explorer.PhiExplorer()
    first = bytes(ui.drawing.value)
    assert first.startswith(b"\x89PNG")
    ui.phi_slider.value = 2.0
    second = bytes(ui.drawing.value)
    assert second.startswith(b"\x89PNG") and second != first


def test_draw_stages_is_labelled():
    fig = explorer.draw_stages(explorer.scaled_network(1))
    image, stages = fig.axes
    assert image.get_xlabel() and stages.get_xlabel() and stages.get_ylabel() and stages.get_title()


def test_bad_phi_is_named():
    with pytest.raises(ValueError, match="phi"):
        explorer.scaled_network(-1)
    with pytest.raises(ValueError, match="alpha"):
        explorer.scaled_network(1, alpha=0.5)
