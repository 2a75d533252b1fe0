"""The scaling experiments: equal-cost families, run identity, and a sweep runner that loses nothing."""

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
from effnet_lab.__main__ import main as cli
from effnet_lab.model import EfficientNet
from effnet_lab.profile import count_macs

ROOT = Path(__file__).resolve().parent.parent


class FakeTrainer:
    """Stands in for effnet_lab.train.train: a made-up accuracy that depends only on the run's
    settings, a call log, and optionally an interruption at the n-th call."""

    def __init__(self, interrupt_at=None):
        self.calls, self.interrupt_at = [], interrupt_at

    def __call__(self, model, config, *, data=None, run_dir=None, progress=True, model_spec=None, command=None):
        self.calls.append(Path(run_dir).name)
        if self.interrupt_at is not None and len(self.calls) == self.interrupt_at:
            raise KeyboardInterrupt  # as if Ctrl-C (or a kill) arrived mid-training
        key = json.dumps([config.to_dict(), model_spec], sort_keys=True, default=str)
        accuracy = 0.5 + (zlib.crc32(key.encode()) % 1000) / 10_000
        return {"test_accuracy": accuracy, "train_seconds": 0.01, "epochs": config.epochs,
                "quick_mode": config.quick, "device": "fake"}


def quick_runs(**kwargs):
    kwargs.setdefault("phis", [1])
    kwargs.setdefault("seeds", [0, 1])
    return X.plan("compare", quick=True, **kwargs)


def table(out):
    return {row["run_id"]: row for row in X.read_results(out)}


# --- the experiments as data ----------------------------------------------------------------


def meta_macs(run):
    with torch.device("meta"):
        return count_macs(EfficientNet(run.model_config()), run.spec.resolution)


def test_scaled_models_cost_their_target_within_10_percent():
    runs = X.plan("compare", quick=False, seeds=[0])
    assert {run.spec.family for run in runs} == {"baseline", "width", "depth", "resolution", "compound"}
    assert sorted({run.spec.phi for run in runs}) == [0, 1, 2, 3]
    # The fast count that the cost matching uses agrees exactly with the project's own counter
    # (profile.count_macs, on a shape-only copy): checked on the baseline and the largest models.
    for run in runs:
        if run.spec.phi in (0, 3):
            assert meta_macs(run) == run.macs, run.spec.label
    for run in runs:
        factor = run.macs / runs[0].macs
        assert abs(factor / 2**run.spec.phi - 1) <= 0.10, f"{run.spec.label}: {factor:.2f}x"
    assert X.check_costs(runs) == []


def test_each_family_scales_only_its_own_axes():
    base = X.FULL.baseline
    for run in X.plan("compare", quick=False, seeds=[0]):
        s = run.spec
        changed = {name for name, value, start in (("width", s.width, base.width), ("depth", s.depth, base.depth),
                                                   ("resolution", s.resolution, base.resolution)) if value != start}
        expected = {"baseline": set(), "compound": {"width", "depth", "resolution"}}.get(s.family, {s.family})
        assert changed == expected, s.label


def test_compound_stays_within_cifar_resolution_and_resolution_scaling_is_flagged():
    runs = X.plan("compare", quick=False, seeds=[0])
    compound = [run for run in runs if run.spec.family == "compound"]
    assert [run.spec.resolution for run in compound] == sorted(run.spec.resolution for run in compound)
    assert max(run.spec.resolution for run in compound) <= X.NATIVE_RESOLUTION
    rows = X.plan_rows(runs)
    for row in rows:
        assert row["upsampled"] == (row["resolution"] > 32)
    # Resolution scaling beyond phi = 1 needs more pixels than CIFAR has: flagged, not hidden.
    assert any(row["upsampled"] for row in rows if row["family"] == "resolution")


def test_grid_candidates_obey_the_constraint_and_cost_twice():
    runs = X.plan("grid", quick=False)
    grid = [run for run in runs if run.spec.family == "grid"]
    assert len(grid) >= 6
    assert any(run.spec.alpha == 1.2 and run.spec.gamma == 1.15 for run in grid)  # the paper's choice
    for run in grid:
        assert run.spec.alpha >= 1 and run.spec.gamma >= 1
        beta = run.spec.width / run.baseline.width
        assert beta >= 1 - X.BETA_TOLERANCE
        assert abs(run.macs / run.baseline.macs / 2 - 1) <= 0.10, run.spec.label
    assert len({run.run_id for run in runs}) == len(runs)


def test_run_ids_are_stable_and_change_with_every_setting(monkeypatch):
    run = quick_runs(seeds=[0])[1]
    same = quick_runs(seeds=[0])[1]
    assert run.run_id == same.run_id and len(run.run_id) == 12
    # ... in another process too (nothing in the id depends on the interpreter's state)
    code = "from effnet_lab import experiments as X; print(X.plan('compare', quick=True, phis=[1], seeds=[0])[1].run_id)"
    other = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert other.stdout.strip() == run.run_id

    variants = [
        X.Run(run.experiment, run.spec.__class__(**{**vars(run.spec), "width": run.spec.width * 1.5}), run.baseline, run.train),
        X.Run(run.experiment, run.spec.__class__(**{**vars(run.spec), "depth": run.spec.depth * 2}), run.baseline, run.train),
        X.Run(run.experiment, run.spec, run.baseline, {**run.train, "resolution": run.train["resolution"] + 1}),
        X.Run(run.experiment, run.spec, run.baseline, {**run.train, "seed": 7}),
        X.Run(run.experiment, run.spec, run.baseline, {**run.train, "epochs": 3}),
        X.Run(run.experiment, run.spec, run.baseline, {**run.train, "lr": 0.5}),
        X.Run(run.experiment, run.spec, run.baseline, {**run.train, "dataset": "cifar100"}),
        X.Run(run.experiment, run.spec, X.Baseline(0.25, 0.5, 12, dropout=0.1), run.train),
    ]
    ids = {variant.run_id for variant in variants}
    assert run.run_id not in ids and len(ids) == len(variants)
    # Where the data is read from, or on which device, does not change the result.
    assert X.Run(run.experiment, run.spec, run.baseline, {**run.train, "device": "cpu", "data": "/x"}).run_id == run.run_id
    before = run.run_id
    monkeypatch.setattr(X, "CODE_VERSION", X.CODE_VERSION + 1)  # a change to what the code computes
    assert run.run_id != before


def test_experiments_share_the_runs_they_have_in_common():
    compare = {(run.spec.family, run.spec.phi, run.seed): run for run in X.plan("compare", quick=False)}
    grid = {(run.spec.alpha, run.spec.gamma): run for run in X.plan("grid", quick=False)}
    # Width-only at phi = 1 is the grid's (alpha, gamma) = (1, 1) candidate: one id, one run folder.
    assert grid[(1.0, 1.0)].run_id == compare[("width", 1.0, 0)].run_id
    assert grid[(None, None)].run_id == compare[("baseline", 0.0, 0)].run_id


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(experiment="nope"), ValueError, "unknown experiment"),
    (dict(experiment=[]), ValueError, "at least one experiment"),
    (dict(phis=[]), ValueError, "at least one"),
    (dict(phis=["a"]), TypeError, "number"),
    (dict(phis=[0]), ValueError, "greater than 0"),
    (dict(phis=[float("nan")]), ValueError, "finite"),
    (dict(phis="123"), TypeError, "list of numbers"),
    (dict(seeds=[]), ValueError, "at least one"),
    (dict(seeds=[-1]), ValueError, "seed"),
    (dict(epochs=0), ValueError, "epochs"),
])
def test_bad_plans_are_clear_errors(kwargs, error, words):
    kwargs = {"experiment": "compare", "quick": True, **kwargs}
    with pytest.raises(error, match=words):
        X.plan(kwargs.pop("experiment"), **kwargs)


@pytest.mark.parametrize("text", ["3/2", "0/0", "0/2", "a/b", "1/0", "2", "-1/2", "1/2/3", "", "1.5/2"])
def test_bad_shard_specs_are_clear_errors(text):
    with pytest.raises(ValueError, match="shard"):
        X.Shard.parse(text)


def test_shards_partition_the_runs():
    runs = quick_runs(phis=[1, 2, 3])
    assert X.Shard.parse("2/4") == X.Shard(2, 4)
    for count in range(1, 6):
        parts = [X.shard_runs(runs, X.Shard(i, count)) for i in range(1, count + 1)]
        ids = [run.run_id for part in parts for run in part]
        assert sorted(ids) == sorted(run.run_id for run in runs)  # every run in exactly one shard
        assert all(parts)  # cost-balanced: nobody idles


# --- the runner -----------------------------------------------------------------------------------


def test_sweep_trains_every_run_once_and_a_rerun_trains_nothing(tmp_path):
    runs = quick_runs()
    fake = FakeTrainer()
    report = X.run_sweep(runs, tmp_path / "out", runs_dir=tmp_path / "runs", train_fn=fake, log=lambda s: None)
    assert sorted(fake.calls) == sorted(run.run_id for run in runs)
    assert report.complete and len(report.trained) == len(runs)
    rows = table(tmp_path / "out")
    assert set(rows) == {run.run_id for run in runs}
    row = rows[runs[1].run_id]
    assert row["family"] == runs[1].spec.family and row["quick_mode"] is True
    assert row["macs_factor"] == pytest.approx(runs[1].macs / runs[1].baseline.macs)

    again = FakeTrainer()
    report = X.run_sweep(runs, tmp_path / "out", runs_dir=tmp_path / "runs", train_fn=again, log=lambda s: None)
    assert again.calls == [] and len(report.skipped) == len(runs)


def test_an_interrupted_sweep_resumes_with_nothing_lost_or_repeated(tmp_path):
    runs = quick_runs()
    first = FakeTrainer(interrupt_at=4)
    with pytest.raises(KeyboardInterrupt):
        X.run_sweep(runs, tmp_path, runs_dir=tmp_path / "runs", train_fn=first, log=lambda s: None)
    assert len(table(tmp_path)) == 3  # the three finished before the interruption are kept
    second = FakeTrainer()
    X.run_sweep(runs, tmp_path, runs_dir=tmp_path / "runs", train_fn=second, log=lambda s: None)
    rows = X.read_results(tmp_path)
    assert sorted(row["run_id"] for row in rows) == sorted(run.run_id for run in runs)  # each exactly once
    assert second.calls[0] == first.calls[-1]  # the interrupted run goes on (in its own run folder) ...
    assert not set(second.calls) & set(first.calls[:-1])  # ... and no finished run is trained again


def test_a_sweep_refuses_to_add_runs_of_the_other_precision_to_a_table(tmp_path):
    X.run_sweep(quick_runs(seeds=[0]), tmp_path, runs_dir=tmp_path / "runs", train_fn=FakeTrainer(), log=lambda s: None)
    fp32 = FakeTrainer()
    with pytest.raises(X.ResultsError, match=r"holds \d+ runs trained in bf16 autocast, and these would train in fp32"):
        X.run_sweep(quick_runs(seeds=[0], amp=False), tmp_path, runs_dir=tmp_path / "runs", train_fn=fp32,
                    log=lambda s: None)
    assert fp32.calls == []  # refused before any training
    X.run_sweep(quick_runs(seeds=[0], amp=False), tmp_path / "fp32", runs_dir=tmp_path / "runs", train_fn=fp32,
                log=lambda s: None)  # another folder: its own table
    assert fp32.calls


def test_two_shards_merge_into_the_table_of_one_unsharded_sweep(tmp_path):
    runs = quick_runs(phis=[1, 2])
    for index in (2, 1):  # the order does not matter
        X.run_sweep(runs, tmp_path / "sharded", shard=X.Shard(index, 2), runs_dir=tmp_path / "r1",
                    train_fn=FakeTrainer(), log=lambda s: None)
    X.run_sweep(runs, tmp_path / "whole", runs_dir=tmp_path / "r2", train_fn=FakeTrainer(), log=lambda s: None)
    files = sorted(p.name for p in (tmp_path / "sharded" / "compare").glob("*.jsonl"))
    assert files == ["results-shard-1-of-2.jsonl", "results-shard-2-of-2.jsonl"]

    def comparable(rows):
        return {r["run_id"]: (r["test_accuracy"], r["family"], r["phi"], r["seed"], r["macs"]) for r in rows.values()}

    assert comparable(table(tmp_path / "sharded")) == comparable(table(tmp_path / "whole"))
    merged = X.merge_tables(tmp_path / "sharded" / "compare")
    assert [p.name for p in (tmp_path / "sharded" / "compare").glob("*.jsonl")] == ["results.jsonl"]
    assert comparable({r["run_id"]: r for r in X.read_table(merged)}) == comparable(table(tmp_path / "whole"))


def test_a_time_budget_leaves_runs_for_the_next_call(tmp_path):
    runs = quick_runs()
    fake = FakeTrainer()
    report = X.run_sweep(runs, tmp_path, runs_dir=tmp_path / "runs", train_fn=fake, max_minutes=1e-6, log=lambda s: None)
    assert fake.calls == [] and len(report.left) == len(runs) and not report.complete


def test_a_finished_run_without_its_row_is_restored_within_any_budget_and_times_nothing(tmp_path):
    """Seen on the GPU machine: its results folder was replaced between two calls, the run
    folders stayed. The finished runs come back from their records at once, whatever the
    budget, and their near-zero times must not make the sweep think the device is fast and
    start runs it has no time for."""
    runs = quick_runs(seeds=[0])
    restored, fresh = runs[0], runs[1]
    finished = tmp_path / "runs" / restored.run_id
    finished.mkdir(parents=True)
    for name in ("checkpoint.pt", "record.json"):  # as train() leaves a finished run: it returns the record as it is
        (finished / name).write_text("{}")
    budget = 0.5 * X.cost_model("cpu").run_seconds(fresh) / 60
    fake, lines = FakeTrainer(), []
    report = X.run_sweep(runs, tmp_path, runs_dir=tmp_path / "runs", train_fn=fake, max_minutes=budget, log=lines.append)
    assert fake.calls == [restored.run_id] and report.trained == [restored.run_id]
    assert fresh.run_id in report.left and restored.run_id in table(tmp_path)
    assert any("its row comes back from its record" in line for line in lines)


@pytest.mark.skipif(os.name != "posix", reason="run claims use POSIX file locks")
def test_a_run_claimed_by_another_process_is_skipped(tmp_path):
    import fcntl

    runs = quick_runs(seeds=[0])
    runs_dir = tmp_path / "runs"
    (runs_dir / runs[0].run_id).mkdir(parents=True)
    held = os.open(runs_dir / runs[0].run_id, os.O_RDONLY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a second sweep process training this run would
        fake = FakeTrainer()
        report = X.run_sweep(runs, tmp_path, runs_dir=runs_dir, train_fn=fake, log=lambda s: None)
    finally:
        os.close(held)
    assert report.busy == [runs[0].run_id] and runs[0].run_id not in fake.calls
    assert len(fake.calls) == len(runs) - 1


def test_a_diverged_run_is_recorded_as_failed_and_not_retried(tmp_path):
    from effnet_lab.train import NonFiniteLossError

    runs = quick_runs(seeds=[0])
    depth_run = next(run.run_id for run in runs if run.spec.family == "depth")

    def diverging(model, config, **kwargs):
        if Path(kwargs["run_dir"]).name == depth_run:
            raise NonFiniteLossError("the training loss became nan")
        return FakeTrainer()(model, config, **kwargs)

    report = X.run_sweep(runs, tmp_path, runs_dir=tmp_path / "runs", train_fn=diverging, log=lambda s: None)
    assert report.complete
    failed = [row for row in X.read_results(tmp_path) if row.get("status") == "failed"]
    assert [row["family"] for row in failed] == ["depth"] and failed[0]["test_accuracy"] is None
    again = FakeTrainer()
    X.run_sweep(runs, tmp_path, runs_dir=tmp_path / "runs", train_fn=again, log=lambda s: None)
    assert again.calls == []  # a failure is a result: rerunning does not loop on it


def test_damaged_or_foreign_tables_are_refused_and_left_untouched(tmp_path):
    runs = quick_runs(seeds=[0])
    path = tmp_path / "compare" / "results.jsonl"
    path.parent.mkdir()
    for content, words in [("{not json\n", "corrupt at line 1"),
                           (json.dumps({"run_id": "x", "table_version": 0}) + "\n", "version 0"),
                           (json.dumps({"hello": 1}) + "\n", "not a sweep result")]:
        path.write_text(content)
        fake = FakeTrainer()
        with pytest.raises(X.ResultsError, match=words):
            X.run_sweep(runs, tmp_path, runs_dir=tmp_path / "runs", train_fn=fake, log=lambda s: None)
        assert fake.calls == [] and path.read_text() == content  # nothing trained, nothing overwritten


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
    mine = X.shard_runs(runs, X.Shard(1, 2))
    assert f"{len(runs)} runs" in text and f"{len(mine)} to do" in text
    assert sum(line.strip().startswith("todo") for line in text.splitlines()) == len(mine)


def test_a_runs_seed_decides_its_initial_weights_whatever_its_process_drew_before(tmp_path):
    import torch

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
                X.run_sweep([run], out, runs_dir=out / "runs", train_fn=weights_trainer(seen), log=lambda s: None)
    seed0, seed1 = (runs[0].run_id, runs[1].run_id) if runs[0].train["seed"] == 0 else (runs[1].run_id, runs[0].run_id)
    assert torch.equal(first[seed0], again[seed0]) and torch.equal(first[seed1], again[seed1])
    assert not torch.equal(first[seed0], first[seed1])
    # The weights code version 2's runs were trained from (seeded, then built): the shipped rows stand.
    from effnet_lab.model import build

    baseline = next(run for run in runs if run.train["seed"] == 0)
    torch.manual_seed(0)
    assert torch.equal(first[seed0], torch.cat([p.detach().flatten() for p in build(baseline.model_config()).parameters()]))


def test_cli_no_amp_plans_fp32_runs_under_their_own_run_ids(tmp_path, capsys):
    assert cli(["sweep", "compare", "--quick", "--list", "--no-amp", "--out", str(tmp_path)]) == 0
    listed = {line.split()[1] for line in capsys.readouterr().out.splitlines() if line.strip().startswith("todo")}
    fp32, bf16 = X.plan("compare", quick=True, amp=False), X.plan("compare", quick=True)
    assert all(run.train_config().amp is False for run in fp32)
    assert listed == {run.run_id for run in fp32}
    assert listed.isdisjoint(run.run_id for run in bf16)  # never taken for the bf16 runs' rows


# --- end to end, with the real trainer --------------------------------------------------------------


@pytest.mark.slow
def test_killing_the_real_sweep_and_rerunning_it_finishes_every_run_exactly_once(tmp_path, cifar10):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), EFFNET_LAB_QUICK="1")
    command = [sys.executable, "-m", "effnet_lab", "sweep", "compare", "--phis", "1", "--seeds", "0", "--epochs", "2",
               "--out", str(tmp_path / "out"), "--runs-dir", str(tmp_path / "runs"), "--no-progress"]
    runs = X.plan("compare", quick=True, phis=[1], seeds=[0], epochs=2)
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    caught = None  # a run killed between its first checkpoint and its record
    deadline = time.time() + 240
    while process.poll() is None and time.time() < deadline:
        for run in runs:
            folder = tmp_path / "runs" / run.run_id
            if (folder / "checkpoint.pt").exists() and not (folder / "record.json").exists():
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
    assert not (tmp_path / "runs" / caught / "record.json").exists()
    before = table(tmp_path / "out") if (tmp_path / "out").exists() else {}
    assert len(before) < len(runs)

    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True)
    rows = X.read_results(tmp_path / "out")
    assert sorted(row["run_id"] for row in rows) == sorted(run.run_id for run in runs)
    by_id = {row["run_id"]: row for row in rows}
    for run_id, row in before.items():
        assert by_id[run_id]["date"] == row["date"]  # finished runs were not trained again
    assert by_id[caught]["resumed"] is True  # it went on from its checkpoint
