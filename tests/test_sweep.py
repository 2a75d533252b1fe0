"""The sweep runner: run folders as the results store, shards that never share a run, and
nothing lost or repeated when a sweep is interrupted."""

import json
import os
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
import torch

from effnet_lab import experiments as X
from effnet_lab import sweep as S
from effnet_lab.__main__ import main as cli
from effnet_lab.train import RECORD_FILE

ROOT = Path(__file__).resolve().parent.parent


class FakeTrainer:
    """Stands in for effnet_lab.train.train: it keeps train's contract for run folders (a folder
    with a record is returned as it is; a finished run writes its record with the sweep's run
    section), a made-up accuracy that depends only on the run's settings, a call log, and
    optionally an interruption at the n-th call."""

    def __init__(self, interrupt_at=None):
        self.calls, self.interrupt_at = [], interrupt_at

    def __call__(self, model, config, *, data=None, run_dir=None, progress=True, model_spec=None, command=None,
                 run_info=None):
        record_path = Path(run_dir) / RECORD_FILE
        if record_path.exists():
            return json.loads(record_path.read_text())
        self.calls.append(Path(run_dir).name)
        if self.interrupt_at is not None and len(self.calls) == self.interrupt_at:
            raise KeyboardInterrupt  # as if Ctrl-C (or a kill) arrived mid-training
        key = json.dumps([config.to_dict(), model_spec], sort_keys=True, default=str)
        record = {"status": "complete", "test_accuracy": 0.5 + (zlib.crc32(key.encode()) % 1000) / 10_000,
                  "train_seconds": 0.01, "epochs": config.epochs, "quick_mode": config.quick, "device": "fake",
                  "config": config.to_dict(), "run": run_info}
        record_path.parent.mkdir(parents=True, exist_ok=True)
        record_path.write_text(json.dumps(record))
        return record


def quick_runs(**kwargs):
    kwargs.setdefault("phis", [1])
    kwargs.setdefault("seeds", [0, 1])
    return X.plan("compare", quick=True, **kwargs)


def records(out):
    """run id -> record, for every run folder under ``out``."""
    return {path.parent.name: json.loads(path.read_text()) for path in Path(out).rglob(RECORD_FILE)}


def quiet(line):
    pass


@pytest.mark.parametrize("text", ["3/2", "0/0", "0/2", "a/b", "1/0", "2", "-1/2", "1/2/3", "", "1.5/2"])
def test_bad_shard_specs_are_clear_errors(text):
    with pytest.raises(ValueError, match="shard"):
        S.Shard.parse(text)


def test_shards_take_every_nth_run_and_never_share_one():
    runs = quick_runs(phis=[1, 2], seeds=[0, 1, 2])
    assert S.Shard.parse("2/4") == S.Shard(2, 4)
    for count in range(1, 6):
        parts = [S.shard_runs(runs, S.Shard(i, count)) for i in range(1, count + 1)]
        ids = [run.run_id for part in parts for run in part]
        assert sorted(ids) == sorted(run.run_id for run in runs) and len(set(ids)) == len(ids)
        assert parts[0] == runs[::count]  # every n-th run of the plan, in the plan's order


def test_sweep_trains_every_run_once_into_its_own_folder_and_a_rerun_trains_nothing(tmp_path):
    runs = quick_runs()
    fake = FakeTrainer()
    report = S.run_sweep(runs, tmp_path, train_fn=fake, log=quiet)
    assert sorted(fake.calls) == sorted(run.run_id for run in runs)
    assert report.complete and len(report.trained) == len(runs)
    for run in runs:
        record = json.loads((tmp_path / "compare" / run.run_id / RECORD_FILE).read_text())
        section = record["run"]
        assert section["run_id"] == run.run_id and section["family"] == run.spec.family
        assert section["seed"] == run.seed and section["code_version"] == X.CODE_VERSION
        assert section["macs_factor"] == pytest.approx(run.macs / run.baseline.macs)
    assert S.status(runs, tmp_path) == [True] * len(runs)

    again = FakeTrainer()
    report = S.run_sweep(runs, tmp_path, train_fn=again, log=quiet)
    assert again.calls == [] and len(report.skipped) == len(runs)


def test_an_interrupted_sweep_resumes_with_nothing_lost_or_repeated(tmp_path):
    runs = quick_runs()
    first = FakeTrainer(interrupt_at=4)
    with pytest.raises(KeyboardInterrupt):
        S.run_sweep(runs, tmp_path, train_fn=first, log=quiet)
    assert len(records(tmp_path)) == 3  # the three finished before the interruption are kept
    second = FakeTrainer()
    S.run_sweep(runs, tmp_path, train_fn=second, log=quiet)
    assert sorted(records(tmp_path)) == sorted(run.run_id for run in runs)  # each exactly once
    assert second.calls[0] == first.calls[-1]  # the interrupted run goes on ...
    assert not set(second.calls) & set(first.calls[:-1])  # ... and no finished run is trained again


def test_two_shards_give_the_folder_of_one_unsharded_sweep(tmp_path):
    runs = quick_runs(phis=[1, 2])
    for index in (2, 1):  # the order does not matter, and both write into one folder
        S.run_sweep(runs, tmp_path / "sharded", shard=S.Shard(index, 2), train_fn=FakeTrainer(), log=quiet)
    S.run_sweep(runs, tmp_path / "whole", train_fn=FakeTrainer(), log=quiet)

    def comparable(found):
        return {run_id: (r["test_accuracy"], r["run"]["family"], r["run"]["phi"], r["run"]["seed"])
                for run_id, r in found.items()}

    assert comparable(records(tmp_path / "sharded")) == comparable(records(tmp_path / "whole"))
    assert sorted(p.name for p in (tmp_path / "sharded").rglob("*") if p.is_file()) == [RECORD_FILE] * len(runs)


def test_a_time_budget_leaves_runs_for_the_next_call(tmp_path):
    runs = quick_runs()
    fake = FakeTrainer()
    report = S.run_sweep(runs, tmp_path, train_fn=fake, max_minutes=1e-6, log=quiet)
    assert fake.calls == [] and len(report.left) == len(runs) and not report.complete
    # Room for the first run as predicted, not two; but the (fake) runs take no time, and the
    # sweep corrects its predictions by what it measures: after the first, all of them fit.
    budget = 1.5 * X.cost_model("cpu").run_seconds(runs[0]) / 60
    report = S.run_sweep(runs, tmp_path, train_fn=FakeTrainer(), max_minutes=budget, log=quiet)
    assert len(report.trained) == len(runs) and report.complete


def test_a_finished_run_folder_is_skipped_whatever_the_budget(tmp_path):
    runs = quick_runs(seeds=[0])
    FakeTrainer()(None, runs[0].train_config(), run_dir=S.run_folder(runs[0], tmp_path), run_info=S.run_section(runs[0]))
    fake = FakeTrainer()
    report = S.run_sweep(runs, tmp_path, train_fn=fake, max_minutes=1e-6, log=quiet)
    assert report.skipped == [runs[0].run_id] and fake.calls == []


def test_a_diverged_run_is_recorded_as_failed_and_not_retried(tmp_path):
    from effnet_lab.train import NonFiniteLossError

    runs = quick_runs(seeds=[0])
    depth_run = next(run.run_id for run in runs if run.spec.family == "depth")

    def diverging(model, config, **kwargs):
        if Path(kwargs["run_dir"]).name == depth_run:
            raise NonFiniteLossError("the training loss became nan")
        return FakeTrainer()(model, config, **kwargs)

    report = S.run_sweep(runs, tmp_path, train_fn=diverging, log=quiet)
    assert report.complete
    failed = [r for r in records(tmp_path).values() if r.get("status") == "failed"]
    assert [r["run"]["family"] for r in failed] == ["depth"] and failed[0]["test_accuracy"] is None
    again = FakeTrainer()
    S.run_sweep(runs, tmp_path, train_fn=again, log=quiet)
    assert again.calls == []  # a failure is a result: rerunning does not loop on it


def test_a_runs_seed_decides_its_initial_weights_whatever_its_process_drew_before(tmp_path):
    def weights_trainer(seen):
        def fake(model, config, *, run_dir=None, **kwargs):
            seen[Path(run_dir).name] = torch.cat([p.detach().flatten() for p in model.parameters()])
            raise KeyboardInterrupt  # nothing written: the same runs can be built again
        return fake

    runs = [run for run in quick_runs() if run.spec.family == "baseline"]  # one model, seeds 0 and 1
    first, again = {}, {}
    for seen, out in ((first, tmp_path / "a"), (again, tmp_path / "b")):
        torch.rand(1000)  # a process that drew other numbers before (another run, the data...)
        for run in reversed(runs) if seen is again else runs:
            with pytest.raises(KeyboardInterrupt):
                S.run_sweep([run], out, train_fn=weights_trainer(seen), log=quiet)
    seed0, seed1 = runs[0].run_id, runs[1].run_id
    assert torch.equal(first[seed0], again[seed0]) and torch.equal(first[seed1], again[seed1])
    assert not torch.equal(first[seed0], first[seed1])


def test_cli_errors_are_one_clear_line(tmp_path, capsys):
    for argv, words in [(["sweep", "nope"], "unknown experiment"), (["sweep", "compare", "--shard", "3/2"], "shard"),
                        (["sweep", "compare", "--shard", "0/0"], "shard"), (["sweep", "compare", "--phis", "x"], "invalid float"),
                        (["sweep", "compare", "--phis"], "expected at least one")]:
        with pytest.raises(SystemExit) as exit_info:
            cli(argv + ["--out", str(tmp_path)])
        assert exit_info.value.code == 2
        error = capsys.readouterr().err
        assert words in error and "Traceback" not in error


def test_cli_lists_the_plan_with_its_cost(tmp_path, capsys):
    assert cli(["sweep", "compare", "grid", "--quick", "--list", "--shard", "1/2", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    runs = X.plan(["compare", "grid"], quick=True)
    mine = S.shard_runs(runs, S.Shard(1, 2))
    assert f"{len(runs)} runs" in text and f"{len(mine)} to do" in text
    assert sum(line.strip().startswith("todo") for line in text.splitlines()) == len(mine)


# --- end to end, with the real trainer --------------------------------------------------------------


@pytest.mark.slow
def test_killing_the_real_sweep_and_rerunning_it_finishes_every_run_exactly_once(tmp_path, cifar10):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), EFFNET_LAB_QUICK="1")
    settings = ["--phis", "1", "--seeds", "0", "--epochs", "2", "--subset-per-class", "60", "--test-per-class", "10"]
    command = [sys.executable, "-m", "effnet_lab", "sweep", "compare", *settings, "--out", str(tmp_path),
               "--no-progress"]
    runs = X.plan("compare", quick=True, phis=[1], seeds=[0], epochs=2, subset_per_class=60, test_per_class=10)
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    caught = None  # a run killed between its first checkpoint and its record
    deadline = time.time() + 240
    while process.poll() is None and time.time() < deadline:
        for run in runs:
            folder = S.run_folder(run, tmp_path)
            if (folder / "checkpoint.pt").exists() and not (folder / RECORD_FILE).exists():
                process.send_signal(signal.SIGKILL)
                caught = run.run_id
                break
        if caught:
            break
        time.sleep(0.02)
    process.wait()
    # Each run checkpoints after epoch 1 and writes its record after epoch 2: the watcher above
    # has a whole epoch to see the checkpoint alone and kill the sweep inside that run.
    assert caught is not None, "no run was caught between its checkpoint and its record"
    before = records(tmp_path)
    assert caught not in before and len(before) < len(runs)

    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True)
    after = records(tmp_path)
    assert sorted(after) == sorted(run.run_id for run in runs)
    for run_id, record in before.items():
        assert after[run_id]["date"] == record["date"]  # finished runs were not trained again
    assert after[caught]["resumed"] is True  # it went on from its checkpoint
    assert after[caught]["run"]["run_id"] == caught and after[caught]["run"]["experiment"] == "compare"


def test_workers_split_the_plan_between_processes_and_train_every_run_once(tmp_path, cifar10):
    runs = X.plan("compare", quick=True, phis=[1], seeds=[0], epochs=1, subset_per_class=6, test_per_class=4,
                  batch_size=20)
    report = S.run_sweep(runs, tmp_path, workers=2, progress=False)
    assert sorted(report.trained) == sorted(run.run_id for run in runs) and report.complete
    found = records(tmp_path)
    assert sorted(found) == sorted(run.run_id for run in runs)
    assert all(record["run"]["run_id"] == run_id for run_id, record in found.items())
    again = S.run_sweep(runs, tmp_path, workers=2, progress=False)
    assert sorted(again.skipped) == sorted(run.run_id for run in runs) and not again.trained
    assert S.default_workers(quick=False, device="cpu") == 1 and S.default_workers(quick=True, device="cuda") == 1
    assert 1 <= S.default_workers(quick=True, device="cpu") <= 4


def test_processes_side_by_side_take_the_longest_runs_first_and_keep_seed_groups_whole():
    runs = X.plan("compare", quick=True, phis=[1, 2], seeds=[0, 1])
    model = X.cost_model("cpu")
    order = S.work_order(runs)
    seconds = [model.run_seconds(group[0]) for group in order]
    assert sorted(run.run_id for group in order for run in group) == sorted(run.run_id for run in runs)
    assert seconds == sorted(seconds, reverse=True) and seconds[0] > 2 * seconds[-1]
    packed = S.work_order(runs, packed=True)
    assert len(packed) == len(runs) // 2 and all(sorted(run.seed for run in group) == [0, 1] for group in packed)


def test_side_by_side_estimates_share_all_work_on_cpu_cores_but_only_fixed_costs_on_one_gpu():
    runs = X.plan("compare", quick=True, phis=[1], seeds=[0])
    cpu, gpu = X.cost_model("cpu"), X.cost_model("cuda")
    assert X.estimate_seconds(runs, cpu, processes=2) == pytest.approx(X.estimate_seconds(runs, cpu) / 2)
    arithmetic = sum(gpu.parts(run)[0] for run in runs)
    fixed = sum(gpu.parts(run)[1] for run in runs)
    assert X.estimate_seconds(runs, gpu, processes=2) == pytest.approx(arithmetic + fixed / 2)


def test_a_run_two_experiments_share_is_trained_once(tmp_path):
    compare = X.plan("compare", quick=True, phis=[1], seeds=[0])
    grid = X.plan("grid", quick=True)
    shared = {run.run_id for run in compare} & {run.run_id for run in grid}
    assert len(shared) >= 2  # the baseline, and the width model at phi = 1 as the grid's (1, 1) candidate
    S.run_sweep(compare, tmp_path, train_fn=FakeTrainer(), log=quiet)
    fake = FakeTrainer()
    S.run_sweep(grid, tmp_path, train_fn=fake, log=quiet)
    assert not shared & set(fake.calls)  # reused, not trained
    for run_id in shared:
        copied = json.loads((tmp_path / "grid" / run_id / RECORD_FILE).read_text())
        original = json.loads((tmp_path / "compare" / run_id / RECORD_FILE).read_text())
        assert copied["test_accuracy"] == original["test_accuracy"] and copied["run"]["experiment"] == "grid"
        assert copied["reused_from"] == f"compare/{run_id}"
