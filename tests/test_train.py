"""The training engine: records, resuming, NaN handling, DDP, the command line, bad input."""

from __future__ import annotations

import datetime
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import effnet_lab
from effnet_lab import __main__ as cli
from effnet_lab import train as train_module
from effnet_lab.data import DeviceLoader
from effnet_lab.train import NonFiniteLossError, TrainConfig, WarmupCosine, build_model, run_folder_state, train

ROOT = Path(__file__).resolve().parents[1]
# A network small enough that a test trains it for a few epochs in seconds.
TINY_MODEL = dict(variant="b0", width=0.25, depth=0.25, stem="cifar")
TINY = dict(epochs=2, batch_size=20, resolution=16, subset_per_class=6, test_per_class=4, eval_batch_size=40)
TINY_ARGS = ["--model", "b0", "--width", "0.25", "--depth", "0.25", "--resolution", "16", "--batch-size", "20",
             "--subset-per-class", "6", "--test-per-class", "4", "--no-progress"]


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return build_model(**TINY_MODEL)


def run_cli(args, timeout=300, **kwargs):
    """``python -m effnet_lab ...`` in a subprocess, from the project folder."""
    return subprocess.run([sys.executable, "-m", "effnet_lab", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, **kwargs)


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize("field, value, error", [
    ("epochs", 0, ValueError), ("epochs", -3, ValueError), ("epochs", 2.5, ValueError), ("epochs", "3", TypeError),
    ("batch_size", 0, ValueError), ("batch_size", -8, ValueError),
    ("lr", 0, ValueError), ("lr", -0.1, ValueError), ("lr", math.nan, ValueError), ("lr", math.inf, ValueError),
    ("lr", "0.1", TypeError), ("weight_decay", -1e-4, ValueError), ("label_smoothing", 1.0, ValueError),
    ("momentum", 1.5, ValueError), ("optimizer", "adam", ValueError), ("schedule", "step", ValueError),
    ("dataset", "mnist", ValueError), ("resolution", 0, ValueError), ("subset_per_class", 0, ValueError),
    ("seed", -1, ValueError), ("ema", "yes", TypeError), ("device", "gpu0", ValueError),
])
def test_bad_config_values_name_the_parameter(field, value, error):
    with pytest.raises(error, match=field):
        TrainConfig(**{field: value})


def test_config_defaults_depend_on_the_optimizer():
    assert TrainConfig(batch_size=512).lr == pytest.approx(0.2)  # linear scaling from 0.1 at 256
    adamw = TrainConfig(optimizer="adamw")
    assert adamw.lr == 2e-3 and adamw.weight_decay == 0.05
    with pytest.raises(ValueError, match="warmup_epochs"):
        TrainConfig(epochs=2, warmup_epochs=3)


def test_quick_defaults_follow_the_switch(monkeypatch):
    monkeypatch.setenv("EFFNET_LAB_QUICK", "1")
    quick = train_module.default_config()
    assert quick.quick and quick.epochs <= 2 and quick.subset_per_class is not None
    monkeypatch.setenv("EFFNET_LAB_QUICK", "0")
    assert not train_module.default_config().quick and train_module.default_config(epochs=5).epochs == 5


def test_warmup_then_cosine():
    factor = WarmupCosine(warmup_steps=10, total_steps=110)
    values = [factor(step) for step in range(110)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(values[9:], values[10:]))  # never rises after the warm-up
    assert values[60] == pytest.approx(0.5) and values[-1] < 0.001


def test_no_weight_decay_on_norms_and_biases():
    model = tiny_model()
    optimizer = train_module.make_optimizer(model, TrainConfig(weight_decay=1e-3))
    decayed, free = optimizer.param_groups
    assert decayed["weight_decay"] == 1e-3 and free["weight_decay"] == 0.0
    bn_and_bias = {id(p) for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()}
    bn_and_bias |= {id(m.bias) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None}
    assert {id(p) for p in free["params"]} == bn_and_bias
    assert len(decayed["params"]) + len(free["params"]) == len(list(model.parameters()))


def test_ema_averages_with_a_ramped_up_decay():
    model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    ema = train_module.EMA(model, decay=0.9)
    start = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    model[1].num_batches_tracked += 5
    ema.update(model)
    d = min(0.9, 2 / 11)  # after one update the average trusts the new weights most
    assert torch.allclose(ema.module[0].weight, d * start + (1 - d) * (start + 1))
    assert ema.module[1].num_batches_tracked == 5 and not ema.module[0].weight.requires_grad
    for _ in range(200):
        ema.update(model)
    assert torch.allclose(ema.module[0].weight, start + 1, atol=1e-6)


def test_build_model_from_command_line_style_arguments():
    model = build_model("b1", stem="cifar", num_classes=100)
    assert model.config.width == 1.0 and model.config.depth == 1.1 and model.config.num_classes == 100
    assert build_model("b0", width=0.5).config.width == 0.5
    assert build_model(None, width=1.2, depth=1.4, dropout=0.1).config.dropout == 0.1
    with pytest.raises(ValueError, match="variant"):
        build_model("b9")


# --- training --------------------------------------------------------------------------------


def test_train_takes_any_module_and_writes_a_record(cifar10, tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    record = train(model, TrainConfig(**TINY), data=cifar10, run_dir=tmp_path / "run", progress=False,
                   model_spec={"name": "a small CNN"})
    saved = json.loads((tmp_path / "run" / "record.json").read_text())
    assert saved == json.loads(json.dumps(record))
    assert record["model"]["class"] == "Sequential" and record["model"]["spec"] == {"name": "a small CNN"}
    assert record["params"] == 3 * 8 * 9 + 8 + 8 * 10 + 10 and record["macs"] == 16 * 16 * 3 * 8 * 9 + 80
    assert record["train_images"] == 60 and record["test_images"] == 40
    assert [point["epoch"] for point in record["accuracy_curve"]] == [1, 2]
    assert (tmp_path / "run" / "checkpoint.pt").is_file()


def test_a_model_with_the_wrong_number_of_classes(cifar10):
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 5))
    with pytest.raises(ValueError, match="needs 10"):
        train(model, TrainConfig(**TINY), data=cifar10, progress=False)
    with pytest.raises(TypeError, match="model"):
        train("b0", TrainConfig(**TINY), data=cifar10)
    with pytest.raises(ValueError, match="resolution 4 is too small"):
        train(tiny_model(), TrainConfig(**{**TINY, "resolution": 4}), data=cifar10)


class BlowsUp(nn.Module):
    """Finite for a few steps, then NaN: what a far too large learning rate does."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.linear, self.after, self.calls = nn.Linear(3, 10), after, 0

    def forward(self, x):
        self.calls += self.training
        out = self.linear(x.mean((2, 3)))
        return out * math.nan if self.training and self.calls > self.after else out


def test_a_nan_loss_stops_the_run_with_a_clear_error(cifar10, tmp_path):
    config = TrainConfig(**{**TINY, "epochs": 3})
    with pytest.raises(NonFiniteLossError, match=r"loss became nan in epoch 2.*checkpoint of the last finished epoch"):
        train(BlowsUp(after=4), config, data=cifar10, run_dir=tmp_path, progress=False)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert saved["epoch"] == 1 and all(torch.isfinite(t).all() for t in saved["model_state"].values())


def interrupt_epoch(monkeypatch, epoch: int, after_steps: int):
    """Make the training loader raise KeyboardInterrupt (a Ctrl-C, a lost runtime) mid-epoch."""
    original = DeviceLoader.__iter__

    def iterate(self):
        interrupted = self.train and self.epoch == epoch
        for step, batch in enumerate(original(self)):
            if interrupted and step == after_steps:
                raise KeyboardInterrupt
            yield batch

    monkeypatch.setattr(DeviceLoader, "__iter__", iterate)


def test_checkpoint_every_n_epochs_and_after_the_last(cifar10, tmp_path, monkeypatch):
    import effnet_lab.train as engine

    saved_epochs = []
    original = engine.save_torch
    monkeypatch.setattr(engine, "save_torch", lambda path, state: (saved_epochs.append(state["epoch"]),
                                                                    original(path, state))[1])
    config = TrainConfig(**{**TINY, "epochs": 5})
    train(tiny_model(), config, data=cifar10, run_dir=tmp_path / "every2", progress=False, checkpoint_every=2)
    assert saved_epochs == [2, 4, 5]
    with monkeypatch.context() as patch:  # interrupted in epoch 4: the run resumes after epoch 2
        interrupt_epoch(patch, epoch=3, after_steps=1)
        with pytest.raises(KeyboardInterrupt):
            train(tiny_model(), config, data=cifar10, run_dir=tmp_path / "cut", progress=False, checkpoint_every=2)
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["epoch"] == 2
    with pytest.raises(ValueError, match="checkpoint_every"):
        train(tiny_model(), config, data=cifar10, progress=False, checkpoint_every=0)


@pytest.mark.parametrize("settings", [
    dict(optimizer="sgd", schedule="cosine"),
    dict(optimizer="adamw", schedule="onecycle", ema=True, warmup_epochs=0.0),
], ids=["sgd-cosine", "adamw-onecycle-ema"])
def test_resuming_ends_exactly_where_an_uninterrupted_run_ends(cifar10, tmp_path, monkeypatch, settings):
    model_spec = dict(TINY_MODEL, drop_path_rate=0.2, dropout=0.2)  # random layers: the RNG state must resume too
    config = TrainConfig(**{**TINY, "epochs": 3}, **settings)
    torch.manual_seed(0)
    straight = train(build_model(**model_spec), config, data=cifar10, run_dir=tmp_path / "straight", progress=False)

    with monkeypatch.context() as patch:
        interrupt_epoch(patch, epoch=1, after_steps=2)
        torch.manual_seed(0)
        with pytest.raises(KeyboardInterrupt):
            train(build_model(**model_spec), config, data=cifar10, run_dir=tmp_path / "resumed", progress=False)
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert run_folder_state(tmp_path / "resumed") == "started" and run_folder_state(tmp_path / "straight") == "finished"
    torch.manual_seed(123)  # a different fresh model: everything must come from the checkpoint
    resumed = train(build_model(**model_spec), config, data=cifar10, run_dir=tmp_path / "resumed", progress=False)

    assert resumed["resumed"] and resumed["resume_count"] == 1 and not straight["resumed"]
    assert resumed["test_accuracy"] == straight["test_accuracy"]
    for a, b in zip(straight["accuracy_curve"], resumed["accuracy_curve"]):
        assert (a["test_accuracy"], a["train_loss"], a["lr"]) == (b["test_accuracy"], b["train_loss"], b["lr"])
    weights = [torch.load(tmp_path / name / "checkpoint.pt", weights_only=True) for name in ("straight", "resumed")]
    for key, tensor in weights[0]["model_state"].items():
        assert torch.equal(tensor, weights[1]["model_state"][key]), key
    if config.ema:
        assert weights[0]["ema"]["_extra_state"] == weights[1]["ema"]["_extra_state"] == {"updates": 3 * 3}
        for key, tensor in weights[0]["ema"].items():
            if key != "_extra_state":
                assert torch.equal(tensor, weights[1]["ema"][key]), key


def test_a_finished_run_is_not_trained_again(cifar10, tmp_path, monkeypatch):
    config = TrainConfig(**{**TINY, "epochs": 1})
    assert run_folder_state(tmp_path) == "new"
    first = train(tiny_model(), config, data=cifar10, run_dir=tmp_path, progress=False)
    assert run_folder_state(tmp_path) == "finished"
    monkeypatch.setattr(DeviceLoader, "__iter__", lambda self: pytest.fail("trained again"))
    assert train(tiny_model(), config, data=cifar10, run_dir=tmp_path, progress=False) == first
    with pytest.raises(ValueError, match=r"other settings \(epochs 1 -> 2"):
        train(tiny_model(), TrainConfig(**{**TINY, "epochs": 2}), data=cifar10, run_dir=tmp_path, progress=False)
    # The record alone is the result: a results folder ships without checkpoints.
    (tmp_path / "checkpoint.pt").unlink()
    assert run_folder_state(tmp_path) == "finished"
    assert train(tiny_model(), config, data=cifar10, run_dir=tmp_path, progress=False) == first
    with pytest.raises(ValueError, match="different model"):
        train(build_model("b0", width=0.5, depth=0.25), config, data=cifar10, run_dir=tmp_path, progress=False)


# --- the command line --------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["--epochs", "0"], "epochs must be at least 1"),
    (["--batch-size", "-4"], "batch_size must be at least 1"),
    (["--lr", "0"], "lr must be greater than 0"),
    (["--lr", "nan"], "lr must be a finite number"),
    (["--lr", "fast"], "argument --lr: invalid float value"),
    (["--dataset", "mnist"], "argument --dataset: invalid choice"),
    (["--model", "b9"], "unknown variant 'b9'"),
    (["--data", "/no/such/cifar.tar.gz"], "data source /no/such/cifar.tar.gz does not exist"),
])
def test_bad_command_lines_get_one_clear_line(args, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", *args, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_the_same_command_gives_the_same_run_folder():
    config = TrainConfig(epochs=3)
    spec = dict(TINY_MODEL)
    assert train_module._run_name(spec, config) == train_module._run_name(dict(spec), TrainConfig(epochs=3))
    assert train_module._run_name(spec, config) != train_module._run_name(spec, TrainConfig(epochs=3, lr=0.3))


@pytest.mark.slow
def test_quick_run_beats_chance_and_its_record_is_complete(cifar10, tmp_path):
    """The command line in quick mode, as CI and a laptop run it."""
    result = run_cli(["train", "--quick", "--out", str(tmp_path / "quick"), "--no-progress"])
    assert result.returncode == 0, result.stderr
    assert f"record: {tmp_path / 'quick' / 'record.json'}" in result.stdout
    record = json.loads((tmp_path / "quick" / "record.json").read_text())
    assert record["test_accuracy"] > 0.20  # chance is 0.10
    assert record["quick_mode"] is True and record["epochs"] == len(record["accuracy_curve"])
    assert record["test_set"].startswith("stratified subset") or record["test_set"].startswith("full")
    assert record["train_seconds"] > 0 and record["images_per_second"] > 0 and record["peak_memory_bytes"] > 2**20
    assert record["device"].startswith("cpu") or "NVIDIA" in record["device"]
    assert record["params"] == effnet_lab.count_params(build_model(**record["model"]["spec"]))
    assert record["macs"] == effnet_lab.count_macs(build_model(**record["model"]["spec"]), record["resolution"])
    assert record["resolution"] == record["config"]["resolution"] and record["seed"] == record["config"]["seed"]
    assert "cifar10" in record["data_source"]
    assert record["effnet_lab_version"] == effnet_lab.__version__
    assert record["git_commit"] is None or len(record["git_commit"]) >= 40
    assert record["command"][:4] == ["python", "-m", "effnet_lab", "train"]
    assert datetime.datetime.fromisoformat(record["date"]).year >= 2024
    assert record["resumed"] is False and record["resume_count"] == 0
    seconds = [point["seconds"] for point in record["accuracy_curve"]]
    assert seconds == sorted(seconds) and seconds[-1] == record["train_seconds"]


@pytest.mark.slow
def test_killing_a_run_mid_epoch_and_rerunning_the_command_resumes(cifar10, tmp_path):
    out = tmp_path / "run"
    args = ["train", *TINY_ARGS, "--epochs", "4", "--subset-per-class", "40", "--out", str(out)]
    process = subprocess.Popen([sys.executable, "-m", "effnet_lab", *args], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (out / "checkpoint.pt").exists():  # the first epoch is done: kill it in the second
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no checkpoint after 240 s"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)  # no chance to clean up, as when a Colab runtime dies
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    assert not (out / "record.json").exists()
    epoch_at_kill = torch.load(out / "checkpoint.pt", weights_only=True)["epoch"]
    assert 1 <= epoch_at_kill < 4

    result = run_cli(args)
    assert result.returncode == 0, result.stderr
    record = json.loads((out / "record.json").read_text())
    assert record["resumed"] is True and record["resume_count"] == 1
    assert [point["epoch"] for point in record["accuracy_curve"]] == [1, 2, 3, 4]
    assert not list(out.glob(".*.tmp"))  # no half-written files left behind


@pytest.mark.slow
def test_data_parallel_under_torchrun_with_two_processes(cifar10, tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not installed")
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", "-m", "effnet_lab", "train", *TINY_ARGS,
         "--epochs", "2", "--device", "cpu", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("record:") == 1  # only the first process reports
    record = json.loads((out / "record.json").read_text())
    assert record["world_size"] == 2 and "2 processes" in record["device"]
    assert len(record["accuracy_curve"]) == 2 and 0.0 <= record["test_accuracy"] <= 1.0
    assert record["train_images"] == 60 and record["test_images"] == 40


@pytest.mark.parametrize("precision, name", [("fp32", "fp32"), ("bf16", "bf16 autocast"),
                                             ("fp16", "fp16 autocast with a gradient scaler")])
def test_every_precision_trains_and_is_recorded(cifar10, precision, name):
    record = train(tiny_model(), TrainConfig(**{**TINY, "epochs": 1}, precision=precision), data=cifar10,
                   progress=False)
    assert record["precision"] == name
    assert all(math.isfinite(point["train_loss"]) for point in record["accuracy_curve"])


def test_precision_is_chosen_by_what_the_device_can_do(monkeypatch):
    from effnet_lab.optim import choose_precision

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert choose_precision(TrainConfig(), cpu) == "fp32"  # autocast on a CPU is slower, not faster
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert choose_precision(TrainConfig(), gpu) == "bf16"  # an A100, an H100
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert choose_precision(TrainConfig(), gpu) == "fp16"  # a T4: fp16 with a gradient scaler
    assert choose_precision(TrainConfig(amp=False), gpu) == "fp32"
    assert choose_precision(TrainConfig(precision="bf16"), cpu) == "bf16"  # forced: kept on any device
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp8")
