"""The prepared benchmark and GPU scripts run end to end on a CPU with tiny settings.

They are meant for a GPU lent for minutes at a time, so they must work the first time
there: these tests run the same code paths here, small.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_time_to_accuracy_plans_trains_and_resumes_with_the_same_plan(cifar10, tmp_path):
    out = tmp_path / "tta"
    planned = run_script("benchmarks/time_to_accuracy.py", "--tiny", "--plan-only", "--out", str(out))
    assert planned.returncode == 0, planned.stderr[-2000:]
    plan = json.loads((out / "plan.json").read_text())
    assert not (out / "run").exists() and not (out / "summary.json").exists()  # the plan alone
    first = run_script("benchmarks/time_to_accuracy.py", "--tiny", "--out", str(out))
    assert first.returncode == 0, first.stderr[-2000:]
    assert "resuming the plan" in first.stdout and json.loads((out / "plan.json").read_text()) == plan
    summary = json.loads((out / "summary.json").read_text())
    record = json.loads((out / "run" / "record.json").read_text())
    assert plan["epochs"] >= 1 and plan["epoch_seconds_estimate"] > 0
    assert summary["epochs"] == plan["epochs"] == len(record["accuracy_curve"])
    assert summary["final_test_accuracy"] == record["test_accuracy"]
    assert summary["tiny_smoke_test"] is True and summary["data_source"]
    assert (out / "accuracy_vs_time.png").stat().st_size > 0

    second = run_script("benchmarks/time_to_accuracy.py", "--tiny", "--out", str(out))
    assert second.returncode == 0, second.stderr[-2000:]
    assert "resuming the plan" in second.stdout
    assert json.loads((out / "plan.json").read_text()) == plan  # no second probe, same epochs


def _precision_check_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("precision_check", ROOT / "benchmarks" / "precision_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bf16_emulation_gives_the_numbers_bf16_autocast_gives_and_keeps_fp32_master_weights():
    import copy

    import torch

    from effnet_lab.model import efficientnet

    precision_check = _precision_check_script()
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
    precision_check = _precision_check_script()

    def broken(*args, **kwargs):
        raise RuntimeError("a kernel this GPU lacks")

    monkeypatch.setattr(precision_check, "diagnose", broken)
    out = tmp_path / "precision"
    assert precision_check.main(["--quick", "--device", "cpu", "--runs", "fp32-seed0", "fp32-seed1", "--out", str(out)]) == 0
    assert "a kernel this GPU lacks" in (out / "diagnosis-error.txt").read_text()
    assert not (out / "diagnosis.json").exists()  # so the next call diagnoses again
    assert (out / "fp32-seed1" / "record.json").exists() and (out / "summary.json").exists()

    # A run finished by an earlier call on another machine: its record came back, its checkpoint did not.
    (out / "fp32-seed1" / "checkpoint.pt").unlink()
    record = json.loads((out / "fp32-seed1" / "record.json").read_text())
    record["test_accuracy"] = 0.4242  # not a number this run could give twice by chance
    (out / "fp32-seed1" / "record.json").write_text(json.dumps(record))
    assert precision_check.main(["--quick", "--device", "cpu", "--runs", "fp32-seed1", "--out", str(out)]) == 0
    assert not (out / "fp32-seed1" / "checkpoint.pt").exists()  # not trained again
    assert json.loads((out / "summary.json").read_text())["runs"][0]["test_accuracy"] == 0.4242


def test_the_gpu_sweep_passes_no_amp_to_every_sweep_process():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_scaling_sweep", ROOT / "benchmarks" / "gpu_scaling_sweep.py")
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    for argv, fp32 in ((["--out", "x"], False), (["--out", "x", "--no-amp"], True)):
        command = sweep.sweep_command(sweep.parse_args(argv), "1/4", 3.0, Path("runs"))
        assert ("--no-amp" in command) is fp32


@pytest.mark.slow
def test_time_to_accuracy_no_amp_plans_an_fp32_recipe(cifar10, tmp_path):
    planned = run_script("benchmarks/time_to_accuracy.py", "--tiny", "--plan-only", "--no-amp", "--out", str(tmp_path))
    assert planned.returncode == 0, planned.stderr[-2000:]
    assert json.loads((tmp_path / "plan.json").read_text())["recipe"]["amp"] is False
