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
