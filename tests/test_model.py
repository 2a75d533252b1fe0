"""The builder against the references: torchvision and timm, exactly."""

import pytest
import torch

import effnet_lab
from effnet_lab import CompoundScaling, count_macs, count_params, create_model, efficientnet

torchvision = pytest.importorskip("torchvision")

VARIANTS = [f"b{i}" for i in range(8)]
TORCHVISION_PARAMS = dict(zip(VARIANTS, [5_288_548, 7_794_184, 9_109_994, 12_233_232,
                                         19_341_616, 30_389_784, 43_040_704, 66_347_960]))
PAPER_GIGA_MACS = dict(zip(VARIANTS, [0.39, 0.70, 1.0, 1.8, 4.2, 9.9, 19, 37]))


@pytest.mark.parametrize("name", VARIANTS)
def test_parameter_counts_equal_torchvision(name):
    model = getattr(effnet_lab, f"efficientnet_{name}")(num_classes=1000)
    assert count_params(model) == TORCHVISION_PARAMS[name]


@pytest.mark.parametrize("name", VARIANTS)
def test_macs_match_torchvision_and_the_paper(name):
    resolution = effnet_lab.OFFICIAL_VARIANTS[name].resolution
    ours = count_macs(create_model(name), resolution)
    with torch.device("meta"):  # shapes are enough to count; no need to initialise 66M weights
        theirs_model = getattr(torchvision.models, f"efficientnet_{name}")()
    theirs = count_macs(theirs_model, resolution)
    assert abs(ours / theirs - 1) < 0.03
    assert abs(ours / (PAPER_GIGA_MACS[name] * 1e9) - 1) < 0.06


@pytest.mark.parametrize("name", VARIANTS)
def test_from_torchvision_reproduces_outputs(name):
    torch.manual_seed(0)
    tv_model = getattr(torchvision.models, f"efficientnet_{name}")().eval()
    ours = effnet_lab.from_torchvision(tv_model).eval()
    assert ours.config.width == effnet_lab.OFFICIAL_VARIANTS[name].width
    assert ours.config.depth == effnet_lab.OFFICIAL_VARIANTS[name].depth
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        difference = (ours(x) - tv_model(x)).abs().max().item()
    assert difference < 1e-4


def test_from_torchvision_keeps_a_new_classifier():
    tv_model = torchvision.models.efficientnet_b0(num_classes=10)
    ours = effnet_lab.from_torchvision(tv_model)
    assert ours.config.num_classes == 10
    assert torch.equal(ours.classifier[1].weight, tv_model.classifier[1].weight)


@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnet_b2"])
def test_from_timm_reproduces_outputs(name):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    timm_model = timm.create_model(name).eval()
    ours = effnet_lab.from_timm(timm_model).eval()
    assert count_params(ours) == count_params(timm_model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (ours(x) - timm_model(x)).abs().max().item() < 1e-4


def test_a_seed_fixes_the_initial_weights_and_leaves_the_process_generator_alone():
    from effnet_lab.model import EfficientNetConfig, build

    config = EfficientNetConfig(width=0.25, depth=0.25, num_classes=10, stem="cifar")

    def weights(model):
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = weights(build(config, seed=7))
    assert torch.equal(torch.get_rng_state(), before)  # a seeded build draws from its own stream
    torch.rand(1000)  # whatever the process drew before
    assert torch.equal(weights(build(config, seed=7)), first)
    assert not torch.equal(weights(build(config, seed=8)), first)
    torch.manual_seed(7)
    assert torch.equal(weights(build(config)), first)  # the same weights as seeding the process, then building
    with pytest.raises(ValueError, match="seed"):
        build(config, seed=-1)


def test_b0_follows_table_1():
    model = create_model("b0")
    stages = model.config.scaled_stages()
    assert [(s.expand_ratio, s.kernel_size, s.stride, s.channels, s.repeats) for s in stages] == [
        (1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
        (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1),
    ]
    assert model.stem.conv.out_channels == 32 and model.head.conv.out_channels == 1280
    assert model.features(torch.randn(1, 3, 224, 224)).shape == (1, 1280, 7, 7)


def test_stochastic_depth_follows_the_linear_schedule():
    model = create_model("b0")
    blocks = [block for stage in model.stages for block in stage]
    assert len(blocks) == 16
    for index, block in enumerate(blocks):
        if block.use_residual:
            assert block.drop_path.p == pytest.approx(0.2 * index / 16)


def test_scaled_model_rounds_channels_and_repeats():
    model = efficientnet(width=1.4, depth=1.8)  # B4's multipliers
    stages = model.config.scaled_stages()
    assert [s.channels for s in stages] == [24, 32, 56, 112, 160, 272, 448]
    assert [s.repeats for s in stages] == [2, 4, 4, 6, 6, 8, 2]
    assert model.head.conv.out_channels == 1792


@pytest.mark.parametrize("phi", [0, 1, 2, 3, 4])
def test_cifar_stem_trains_on_32px_for_phi_0_to_4(phi):
    depth, width, _ = CompoundScaling().multipliers(phi)
    model = efficientnet(width, depth, num_classes=10, stem="cifar")
    assert model.min_resolution == 8
    x = torch.randn(2, 3, 32, 32)
    assert model.features(x).shape[-2:] == (4, 4)  # not 1x1 as the ImageNet stem would leave
    logits = model(x)
    assert logits.shape == (2, 10)
    logits.logsumexp(1).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_cifar_stem_has_the_same_parameters_as_the_imagenet_stem():
    # Strides change the feature-map sizes, not the weights.
    assert count_params(efficientnet(stem="cifar")) == count_params(efficientnet())
    # A 32x32 image ends as a 4x4 map, as a 128x128 image does with the ImageNet stem.
    cifar = efficientnet(stem="cifar").features(torch.randn(1, 3, 32, 32))
    imagenet = efficientnet().features(torch.randn(1, 3, 128, 128))
    assert cifar.shape == imagenet.shape == (1, 1280, 4, 4)


def test_summary_lists_layers():
    pytest.importorskip("torchinfo")
    stats = effnet_lab.summary(efficientnet(num_classes=10, stem="cifar"), 32)
    assert stats.total_params == count_params(efficientnet(num_classes=10, stem="cifar"))
    assert "stages" in str(stats) and "head" in str(stats)
    assert "MBConv" in str(effnet_lab.summary(efficientnet(num_classes=10, stem="cifar"), 32, depth=3))
