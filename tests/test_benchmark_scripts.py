"""The benchmark scripts behind ``python -m effnet_lab reproduce`` run end to end on a CPU
with their quick settings: the same code paths a GPU runs, small."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from script_loader import load_script

ROOT = Path(__file__).resolve().parents[1]


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_time_to_accuracy_plans_trains_and_resumes_with_the_same_plan(cifar10, tmp_path):
    out = tmp_path / "tta"
    planned = run_script("benchmarks/time_to_accuracy.py", "--quick", "--plan-only", "--out", str(out))
    assert planned.returncode == 0, planned.stderr[-2000:]
    plan = json.loads((out / "plan.json").read_text())
    assert not (out / "run").exists() and not (out / "summary.json").exists()  # the plan alone
    first = run_script("benchmarks/time_to_accuracy.py", "--quick", "--out", str(out))
    assert first.returncode == 0, first.stderr[-2000:]
    assert "resuming the plan" in first.stdout and json.loads((out / "plan.json").read_text()) == plan
    summary = json.loads((out / "summary.json").read_text())
    record = json.loads((out / "run" / "record.json").read_text())
    assert plan["probe_epoch_seconds"] > 0 and plan["probe_startup_seconds"] >= 0
    # The plan is the probe's measurement, not a guess: the recipe itself, for two epochs.
    probe = json.loads((out / "probe" / "record.json").read_text())
    assert probe["epochs"] == 2 and probe["params"] == record["params"] and probe["train_images"] == record["train_images"]
    assert plan["epochs"] == tta.plan_epochs(plan["budget_seconds"], plan["probe_epoch_seconds"],
                                             plan["probe_startup_seconds"])
    assert summary["epochs"] == plan["epochs"] == len(record["accuracy_curve"])
    assert summary["final_test_accuracy"] == record["test_accuracy"]
    assert summary["quick"] is True and summary["data_source"]
    assert plan["cudnn_benchmark"] is True and summary["cudnn_benchmark"] is True  # the probe timed what trains
    assert (out / "accuracy_vs_time.png").stat().st_size > 0

    second = run_script("benchmarks/time_to_accuracy.py", "--quick", "--out", str(out))
    assert second.returncode == 0, second.stderr[-2000:]
    assert "resuming the plan" in second.stdout
    assert json.loads((out / "plan.json").read_text()) == plan  # no second probe, same epochs


tta = load_script("benchmarks/time_to_accuracy.py")


def test_the_plan_fits_the_epochs_after_the_start_up_into_95_percent_of_the_budget():
    # The first H200 attempt's figures: 4.68 s an epoch, 78 s of start-up (compilation).
    assert tta.plan_epochs(300, 4.68, 78) == int((285 - 78) // 4.68) == 44
    assert tta.plan_epochs(300, 3.0, 0) == 95
    assert tta.plan_epochs(300, 400, 0) == 1  # at least one epoch, whatever the probe says


def test_an_interrupted_run_leaves_its_curve_up_to_the_last_checkpoint(cifar10, tmp_path, monkeypatch, capsys):
    """A time limit's SIGINT (or Ctrl-C) mid-training: partial.json keeps what was measured."""
    import matplotlib

    matplotlib.use("Agg")
    from effnet_lab import plots
    from effnet_lab.files import save_torch

    curve = [{"epoch": 1, "seconds": 5.0, "test_accuracy": 0.5, "train_loss": 1.5, "lr": 0.1},
             {"epoch": 2, "seconds": 9.0, "test_accuracy": 0.7, "train_loss": 1.0, "lr": 0.05}]

    def train_until_interrupted(model, config, run_dir, **kwargs):
        save_torch(run_dir / tta.CHECKPOINT_FILE, {"epoch": 2, "curve": curve})
        raise KeyboardInterrupt

    monkeypatch.setattr(tta, "train", train_until_interrupted)
    out = tmp_path / "tta"
    assert tta.main(["--quick", "--epochs", "5", "--out", str(out)]) == 130
    partial = json.loads((out / "partial.json").read_text())
    assert partial["accuracy_curve"] == curve and (partial["epochs_done"], partial["epochs_planned"]) == (2, 5)
    assert partial["seconds_to_target"] is None and partial["git_commit"] and partial["data_source"]
    assert not (out / "summary.json").exists()
    fig, text = plots.time_to_accuracy_report(out)
    assert fig.axes[0].lines and text.startswith("INTERRUPTED after epoch 2 of 5") and "90% not reached" in text
    assert "best 70.00% (epoch 2, 9 s); stopped after 9 s" in text
    assert plots.time_to_accuracy_report(tmp_path / "nothing") == (None, f"no time-to-accuracy results in "
                                                                         f"{tmp_path / 'nothing'} yet")


def test_bf16_emulation_gives_the_numbers_bf16_autocast_gives_and_keeps_fp32_master_weights():
    import copy

    import torch

    from effnet_lab.model import efficientnet

    precision_check = load_script("benchmarks/precision_check.py")
    torch.manual_seed(0)
    model = efficientnet(0.5, 1.0, num_classes=10, stem="cifar", dropout=0.0).train()
    emulated = precision_check.emulate_bf16(copy.deepcopy(model)).train()
    x = torch.randn(32, 3, 21, 21)
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = model.stem(x)  # conv, batch norm, SiLU: fp32 in, bf16 out
        fp32, bf16_emulated = model.stem(x), emulated.stem(x)
    assert autocast.dtype == torch.bfloat16 and bf16_emulated.dtype == torch.float32
    # The same numbers as autocast (up to the odd last-bit difference of a summation order);
    # plain fp32 differs in most of them.
    assert (bf16_emulated == autocast.float()).float().mean() > 0.999
    assert (fp32 == autocast.float()).float().mean() < 0.5

    logits = emulated(x)
    assert torch.equal(logits, logits.bfloat16().float())
    logits.square().mean().backward()
    conv = emulated.stem.conv
    master = conv.parametrizations.weight.original
    assert master.dtype == torch.float32 and not torch.equal(master, master.bfloat16().float())  # fp32, unrounded
    assert torch.equal(conv.weight, master.bfloat16().float())  # what the layer computes with
    assert master.grad is not None and torch.equal(master.grad, master.grad.bfloat16().float())  # a bf16 gradient


@pytest.mark.slow
def test_precision_check_trains_diagnoses_and_summarises_on_a_cpu(cifar10, tmp_path):
    out = tmp_path / "precision"
    done = run_script("benchmarks/precision_check.py", "--quick", "--device", "cpu", "--runs", "fp32-seed0",
                      "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((out / "fp32-seed0" / "record.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert record["precision"] == "fp32" and summary["runs"][0]["test_accuracy"] == record["test_accuracy"]

    diagnosis = json.loads((out / "diagnosis.json").read_text())
    assert diagnosis["test_images_max_abs_difference"] == 0 and diagnosis["augmentation_identical"] is True
    variants = diagnosis["variants"]
    reference = variants["cpu fp32 (reference)"]
    assert set(variants) == {"cpu fp32 (reference)", "cpu fp32", "cpu fp32 NCHW", "cpu bf16 autocast",
                             "cpu bf16 autocast NCHW", "cpu bf16 emulated"}
    # The same weights and batch on the same device: fp32 agrees with itself; bf16 is close, not equal.
    assert variants["cpu fp32"]["test_accuracy"] == reference["test_accuracy"]
    assert variants["cpu fp32"]["gradient_cosine"] > 0.9999
    for name in ("cpu bf16 autocast", "cpu bf16 emulated"):
        assert 0.9 < variants[name]["gradient_cosine"] < 0.99999
        assert variants[name]["loss"] != reference["loss"]


@pytest.mark.slow
def test_a_failed_diagnosis_does_not_stop_the_runs_and_finished_runs_are_not_trained_again(cifar10, tmp_path, monkeypatch):
    precision_check = load_script("benchmarks/precision_check.py")

    def broken(*args, **kwargs):
        raise RuntimeError("a kernel this GPU lacks")

    monkeypatch.setattr(precision_check, "diagnose", broken)
    out = tmp_path / "precision"
    assert precision_check.main(["--quick", "--device", "cpu", "--runs", "fp32-seed0", "fp32-seed1", "--out", str(out)]) == 0
    assert "a kernel this GPU lacks" in (out / "diagnosis-error.txt").read_text()
    assert not (out / "diagnosis.json").exists()  # so the next run diagnoses again
    assert (out / "fp32-seed1" / "record.json").exists() and (out / "summary.json").exists()

    # A run finished on another machine: its record is here, its checkpoint is not.
    (out / "fp32-seed1" / "checkpoint.pt").unlink()
    record = json.loads((out / "fp32-seed1" / "record.json").read_text())
    record["test_accuracy"] = 0.4242  # not a number this run could give twice by chance
    (out / "fp32-seed1" / "record.json").write_text(json.dumps(record))
    assert precision_check.main(["--quick", "--device", "cpu", "--runs", "fp32-seed1", "--out", str(out)]) == 0
    assert not (out / "fp32-seed1" / "checkpoint.pt").exists()  # not trained again
    assert json.loads((out / "summary.json").read_text())["runs"][0]["test_accuracy"] == 0.4242


@pytest.mark.slow
def test_time_to_accuracy_no_amp_plans_an_fp32_recipe(cifar10, tmp_path):
    planned = run_script("benchmarks/time_to_accuracy.py", "--quick", "--plan-only", "--no-amp", "--out", str(tmp_path))
    assert planned.returncode == 0, planned.stderr[-2000:]
    assert json.loads((tmp_path / "plan.json").read_text())["recipe"]["amp"] is False
