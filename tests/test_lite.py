"""EfficientNet-Lite as configuration of the same builder: counts and outputs equal timm's."""

import pytest
import torch

import effnet_lab

timm = pytest.importorskip("timm")


@pytest.mark.parametrize("index", range(5))
def test_lite_parameter_counts_equal_timm(index):
    ours = effnet_lab.create_model(f"lite{index}")
    with torch.device("meta"):
        theirs = timm.create_model(f"efficientnet_lite{index}")
    assert effnet_lab.count_params(ours) == effnet_lab.count_params(theirs)


def test_lite_has_no_se_relu6_and_unscaled_stem_head_and_end_stages():
    model = effnet_lab.create_model("lite4")
    assert model.stem.conv.out_channels == 32 and model.head.conv.out_channels == 1280
    assert isinstance(model.stem.act, torch.nn.ReLU6)
    assert all(isinstance(block.se, torch.nn.Identity) for stage in model.stages for block in stage)
    repeats = [len(stage) for stage in model.stages]
    assert repeats[0] == 1 and repeats[-1] == 1 and repeats[1] == 4  # ceil(2 * 1.8)


def test_from_timm_lite0_reproduces_outputs():
    torch.manual_seed(0)
    theirs = timm.create_model("efficientnet_lite0").eval()
    ours = effnet_lab.from_timm(theirs).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (ours(x) - theirs(x)).abs().max().item() < 1e-4
