"""Lesson 06: the family table, its plot, parity with torchvision and timm, the online check."""

import math

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from effnet_lab import count_params, create_model, family


def test_family_table_counts_and_times_what_it_says():
    table = family.family_table(["b0", "b1"], latency_variants=["b0"], device="cpu", repeats=1, progress=False)
    assert list(table.index) == ["B0", "B1"]
    assert table.loc["B1", "params (M)"] * 1e6 == pytest.approx(count_params(create_model("b1")))
    # Our MAC counts agree with the paper's (rounded) FLOPs.
    for name in ("B0", "B1"):
        assert table.loc[name, "MACs (B)"] == pytest.approx(table.loc[name, "paper MACs (B)"], rel=0.03)
    assert table.loc["B0", "latency (ms)"] > 0 and math.isnan(table.loc["B1", "latency (ms)"])
    assert table.loc["B1", "resolution"] == 240


def test_plot_family_has_a_latency_panel_only_when_measured():
    table = family.family_table(["b0", "b1", "b2"], latency_variants=[], progress=False)
    assert len(family.plot_family(table).axes) == 2
    table.loc["B0", "latency (ms)"], table["device"] = 10.0, "test"
    fig = family.plot_family(table)
    assert len(fig.axes) == 3 and all(ax.get_xlabel() for ax in fig.axes)


def test_parity_with_torchvision_and_timm():
    pytest.importorskip("timm")
    rows = family.parity("b0", resolution=64)
    assert [row["library"] for row in rows] == ["torchvision", "timm"]
    for row in rows:
        assert row["their params"] == row["our params"]
        assert row["max |output difference|"] < 1e-5


def test_pretrained_with_a_new_classifier_keeps_every_other_weight(monkeypatch):
    import torchvision

    torch.manual_seed(0)
    source = torchvision.models.efficientnet_b0()  # stands in for the downloaded one
    monkeypatch.setattr(torchvision.models, "efficientnet_b0", lambda weights=None: source)
    model = family.pretrained_from_torchvision("b0", num_classes=10)
    assert model.classifier[-1].out_features == 10 and model.config.num_classes == 10
    x = torch.randn(1, 3, 64, 64)
    source.eval(), model.eval()
    with torch.no_grad():
        assert torch.allclose(model.features(x), source.features(x), atol=1e-6)


def test_bad_variant_is_named():
    with pytest.raises(ValueError, match="variant"):
        family.family_table(["b9"])
