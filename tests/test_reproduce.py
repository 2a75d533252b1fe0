"""python -m effnet_lab reproduce: the list of GPU jobs, what is done, quick runs, the budget."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from effnet_lab import __main__ as cli
from effnet_lab import experiments, reproduce, settings, sweep

ROOT = Path(__file__).resolve().parents[1]
# A plain checkout may lack the front-end packages: reproduce must not need them.
BLOCK_FRONT_END = """
import importlib.abc, sys
class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torchinfo", "ipywidgets", "IPython"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Missing())
"""


def job_lines(text: str) -> dict[str, str]:
    return {line.split()[0]: line for line in text.splitlines() if line.split() and line.split()[0] in reproduce.BY_NAME}


def test_list_on_an_empty_folder_says_every_job_is_to_do_with_its_estimate(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCK_FRONT_END)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(blocker), str(ROOT)]))
    listed = subprocess.run([sys.executable, "-m", "effnet_lab", "reproduce", "--list", "--out", str(tmp_path / "out")],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0, listed.stderr[-2000:]
    lines = job_lines(listed.stdout)
    assert list(lines) == [job.name for job in reproduce.JOBS]  # every job, in order
    minutes = {name: float(line.split("to do")[1].split("min")[0]) for name, line in lines.items()}
    assert minutes["time-to-accuracy"] == 7 and minutes["throughput"] == 9  # measured on an H200
    assert all(value > 0 for value in minutes.values())
    total = listed.stdout.split("total left: about ")[1]
    assert total.endswith(" minutes on one large GPU\n")
    assert abs(float(total.split()[0]) - sum(minutes.values())) <= len(minutes) / 2  # each shown rounded
    assert not (tmp_path / "out").exists()  # --list writes nothing


def test_a_quick_run_writes_its_results_and_a_second_run_skips_them(cifar10, tmp_path, capfd):
    out = tmp_path / "out"
    argv = ["reproduce", "time-to-accuracy", "grid", "--quick", "--out", str(out), "--no-progress"]
    # The grid's runs already have their records (as a sweep writes them): done, nothing to train.
    grid = experiments.plan("grid", quick=True)
    for run in grid:
        folder = sweep.run_folder(run, out / "scaling-gpu")
        folder.mkdir(parents=True)
        (folder / "record.json").write_text(json.dumps({"status": "complete"}))
    assert cli.main(argv) == 0
    said = capfd.readouterr().out
    summary = json.loads((out / "time-to-accuracy" / "summary.json").read_text())
    record = json.loads((out / "time-to-accuracy" / "run" / "record.json").read_text())
    assert summary["quick"] is True and summary["final_test_accuracy"] == record["test_accuracy"]
    assert "[time-to-accuracy] done" in said and "[grid] done" in said
    assert "effnet_lab sweep grid" not in said  # the grid was not started
    written = (out / "time-to-accuracy" / "summary.json").stat().st_mtime_ns

    assert cli.main(argv) == 0  # again: both done, nothing runs
    said = capfd.readouterr().out
    assert "time_to_accuracy.py" not in said and (out / "time-to-accuracy" / "summary.json").stat().st_mtime_ns == written

    (sweep.run_folder(grid[0], out / "scaling-gpu") / "record.json").unlink()  # one run left
    assert cli.main([*argv[:3], "--list", "--quick", "--out", str(out)]) == 0
    lines = job_lines(capfd.readouterr().out)
    assert " done " in lines["time-to-accuracy"] and "partly done" in lines["grid"]


def test_a_one_piece_job_that_does_not_fit_the_minutes_left_is_not_started(tmp_path, capfd):
    out = tmp_path / "out"
    assert cli.main(["reproduce", "time-to-accuracy", "finetune", "--minutes", "0.5", "--out", str(out)]) == 0
    said = capfd.readouterr().out
    assert "[time-to-accuracy] not started: it runs in one piece, about 7 min, and 0.5 min of the budget are left" in said
    assert "finetune" not in said  # the jobs run in order: it stops there
    assert not (out / "time-to-accuracy").exists()


def test_a_sweep_gets_the_minutes_left_and_stops_within_them(tmp_path, capfd, cifar10):
    out = tmp_path / "out"
    # 1.1 minutes, less what reproduce took to start and half a minute to write, leaves the sweep
    # about a third of a minute: room for a few of the quick grid's runs (the cost model says
    # 0.2-0.3 minutes each, and the grid about 0.8 with two processes), not for all of them.
    start = time.perf_counter()
    assert cli.main(["reproduce", "grid", "--quick", "--minutes", "1.1", "--out", str(out), "--no-progress"]) == 0
    seconds = time.perf_counter() - start
    said = capfd.readouterr().out
    given = re.search(r"--max-minutes (\d+\.\d+)", said)
    assert "sweep grid" in said and given and 0.1 <= float(given.group(1)) <= 0.6
    assert "[grid] stopped at the time budget: rerun the same command to continue" in said
    assert not all(sweep.status(experiments.plan("grid", quick=True), out / "scaling-gpu"))
    assert seconds < 1.1 * 60 + 30  # within the budget, give or take a run's start and finish


def test_a_bad_job_name_is_one_clear_sentence(capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(["reproduce", "scaling", "resnet"])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert error == ("python -m effnet_lab reproduce: error: unknown job 'resnet'; the jobs are: "
                     + ", ".join(reproduce.BY_NAME) + "\n")


def test_without_a_checkout_it_says_how_to_get_one(monkeypatch, capsys):
    monkeypatch.setattr(settings, "project_root", lambda: None)
    with pytest.raises(SystemExit) as stopped:
        cli.main(["reproduce", "--list"])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert "reproduce runs from a checkout of effnet-lab: git clone https://github.com/effnet-lab/effnet-lab" in error
    assert "Traceback" not in error
