"""Seeds trained together as one packed network: each run's own record, what training it alone
gives, resuming after an interruption, and the sweep's --packed."""

from __future__ import annotations

import json

import pytest
import torch

from effnet_lab import experiments as X
from effnet_lab import packed_train
from effnet_lab import sweep as S
from effnet_lab.data import DeviceLoader
from effnet_lab.packed import pack, unpack
from effnet_lab.packed_train import PACKED_CHECKPOINT_FILE, seed_groups, train_seeds
from effnet_lab.results import read_runs
from effnet_lab.train import RECORD_FILE, train

from test_train import interrupt_epoch

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one CPU thread

# Quick mode's baseline (width and depth 0.25, 16 px) on a few real CIFAR-10 images: 3 steps an epoch.
SMALL = dict(epochs=2, batch_size=10, subset_per_class=3, test_per_class=2, eval_batch_size=20)


def small_runs(seeds=(0, 1), **overrides):
    return X.plan("compare", quick=True, phis=[1], seeds=list(seeds), **{**SMALL, **overrides})


def baseline_seeds(**overrides):
    group = seed_groups(small_runs(**overrides))[0]
    assert [run.spec.family for run in group] == ["baseline"] * len(group)
    return group


def as_json(value):
    return json.loads(json.dumps(value, default=str))


def without_seconds(curve):
    return [{k: v for k, v in point.items() if k != "seconds"} for point in curve]


def trained_models(group, out):
    """The group's networks as the last checkpoint holds them."""
    saved = torch.load(S.run_folder(group[0], out) / PACKED_CHECKPOINT_FILE, weights_only=True)
    packed = pack([run.build_model() for run in group])
    packed.load_state_dict(saved["packed_state"])
    return unpack(packed)



def test_each_run_gets_its_own_record_and_finished_runs_are_not_trained_again(cifar10, tmp_path, monkeypatch):
    packed_sizes = []
    original_pack = packed_train.pack
    monkeypatch.setattr(packed_train, "pack", lambda models: (packed_sizes.append(len(models)), original_pack(models))[1])
    group = baseline_seeds()
    records = train_seeds(group, data=cifar10, out=tmp_path, progress=False, command=["sweep", "--packed"])
    assert packed_sizes == [2]
    for run, record in zip(group, records, strict=True):
        assert json.loads((S.run_folder(run, tmp_path) / RECORD_FILE).read_text()) == as_json(record)
        assert record["status"] == "complete" and record["packed"] == 2 and record["seed"] == run.seed
        assert record["run"] == as_json(S.run_section(run)) and record["config"] == run.train_config().to_dict()
        assert record["model"]["spec"] == S.model_spec(run) and record["command"] == ["sweep", "--packed"]
        assert [point["epoch"] for point in record["accuracy_curve"]] == [1, 2]
        assert record["train_images"] == 30 and record["test_images"] == 20
    assert records[0]["accuracy_curve"] != records[1]["accuracy_curve"]  # two seeds, two models
    rows = read_runs(tmp_path)
    assert sorted((row["run_id"], row["seed"], row["family"]) for row in rows) == sorted(
        (run.run_id, run.seed, "baseline") for run in group)

    assert train_seeds(group, data=cifar10, out=tmp_path, progress=False) == records and packed_sizes == [2]
    (S.run_folder(group[1], tmp_path) / RECORD_FILE).unlink()  # one of the two left to do: trained alone
    again = train_seeds(group, data=cifar10, out=tmp_path, progress=False)
    assert packed_sizes == [2, 1] and again[0] == records[0] and again[1]["packed"] == 1


def test_packed_training_equals_training_each_seed_alone(cifar10, tmp_path, monkeypatch):
    # In float64. A packed network computes what the separate ones compute, but its grouped
    # convolutions and batched classifier add the same products in another order than the
    # separate layers' kernels: in float32 the results differ in their last bits (~1e-7), and
    # training steps carry such differences forward. In float64 they stay near 1e-16, so the
    # losses agree to 1e-9, the accuracies and learning rates exactly.
    finish, build = DeviceLoader._finish, X.Run.build_model
    monkeypatch.setattr(DeviceLoader, "_finish", lambda self, images: finish(self, images).double())
    monkeypatch.setattr(X.Run, "build_model", lambda self: build(self).double())
    # SGD: Adam divides each update by the gradient's running size, which turns the 1e-16 noise
    # of a parameter whose gradient is zero into a full-size step (tests/test_packed.py checks
    # an AdamW step on its own); and channels_last off: float64 convolutions are much slower in it.
    group = baseline_seeds(channels_last=False, optimizer="sgd", lr=0.05, weight_decay=5e-4)
    packed_records = train_seeds(group, data=cifar10, out=tmp_path / "packed", progress=False)
    for run, packed_record, packed_model in zip(group, packed_records, trained_models(group, tmp_path / "packed"),
                                                strict=True):
        alone = run.build_model()
        record = train(alone, run.train_config(), data=cifar10, run_dir=tmp_path / "alone" / run.run_id,
                       progress=False, model_spec=S.model_spec(run), run_info=S.run_section(run))
        assert set(packed_record) == set(as_json(record)) | {"packed"}  # exactly train's fields, and "packed"
        for field in ("test_accuracy", "params", "macs", "model", "config", "run", "test_set", "data_source"):
            assert packed_record[field] == as_json(record)[field], field
        packed_curve, curve = packed_record["accuracy_curve"], record["accuracy_curve"]
        assert [p["test_accuracy"] for p in packed_curve] == [p["test_accuracy"] for p in curve]
        assert [p["lr"] for p in packed_curve] == [p["lr"] for p in curve]
        assert [p["train_loss"] for p in packed_curve] == pytest.approx([p["train_loss"] for p in curve], rel=1e-9)
        trained, start = alone.state_dict(), run.build_model().state_dict()
        for name, tensor in packed_model.state_dict().items():
            torch.testing.assert_close(tensor, trained[name], atol=1e-10, rtol=1e-9, msg=name)
        assert not torch.equal(trained["stem.conv.weight"], start["stem.conv.weight"])  # it did train


def test_an_interrupted_group_resumes_and_ends_where_an_uninterrupted_one_ends(cifar10, tmp_path, monkeypatch):
    group = baseline_seeds()
    whole = train_seeds(group, data=cifar10, out=tmp_path / "whole", progress=False)
    with monkeypatch.context() as patch:
        interrupt_epoch(patch, epoch=1, after_steps=1)  # in the second (last) epoch
        with pytest.raises(KeyboardInterrupt):
            train_seeds(group, data=cifar10, out=tmp_path / "cut", progress=False)
    saved = torch.load(S.run_folder(group[0], tmp_path / "cut") / PACKED_CHECKPOINT_FILE, weights_only=True)
    assert saved["epoch"] == 1 and saved["runs"] == [run.run_id for run in group]
    assert not any((S.run_folder(run, tmp_path / "cut") / RECORD_FILE).exists() for run in group)

    resumed = train_seeds(group, data=cifar10, out=tmp_path / "cut", progress=False)
    for done, again in zip(whole, resumed, strict=True):
        assert without_seconds(again["accuracy_curve"]) == without_seconds(done["accuracy_curve"])
        assert again["resumed"] is True and done["resumed"] is False
    for done, again in zip(trained_models(group, tmp_path / "whole"), trained_models(group, tmp_path / "cut")):
        for name, tensor in done.state_dict().items():
            assert torch.equal(again.state_dict()[name], tensor), name


def test_only_one_run_with_several_seeds_can_be_trained_packed(tmp_path):
    runs = small_runs()
    baseline, width = seed_groups(runs)[:2]
    with pytest.raises(ValueError, match="another network.*differ by their seed alone"):
        train_seeds([baseline[0], width[1]], out=tmp_path)
    slower = seed_groups(small_runs(lr=0.01))[0]
    with pytest.raises(ValueError, match=r"other settings.*\(lr\)"):
        train_seeds([baseline[0], slower[1]], out=tmp_path)
    with pytest.raises(ValueError, match="seeds repeat"):
        train_seeds([baseline[0], baseline[0]], out=tmp_path)
    with pytest.raises(ValueError, match="non-empty list"):
        train_seeds([], out=tmp_path)
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_the_packed_sweep_trains_each_group_once_and_a_rerun_trains_nothing(cifar10, tmp_path, monkeypatch):
    runs = [run for run in small_runs(epochs=1) if run.spec.family in ("baseline", "width")]
    groups = []
    original = packed_train.train_seeds
    monkeypatch.setattr(packed_train, "train_seeds",
                        lambda group, **kwargs: (groups.append([run.run_id for run in group]), original(group, **kwargs))[1])
    report = S.run_sweep(runs, tmp_path, data=cifar10, progress=False, packed=True, log=lambda line: None)
    assert groups == [[run.run_id for run in runs[:2]], [run.run_id for run in runs[2:]]]
    assert sorted(report.trained) == sorted(run.run_id for run in runs) and report.complete
    rows = read_runs(tmp_path)
    assert sorted(row["run_id"] for row in rows) == sorted(run.run_id for run in runs)
    assert all(row["packed"] == 2 and row["status"] == "complete" for row in rows)

    report = S.run_sweep(runs, tmp_path, data=cifar10, progress=False, packed=True, log=lambda line: None)
    assert len(groups) == 2 and report.trained == [] and sorted(report.skipped) == sorted(r.run_id for r in runs)

    seen = {}
    monkeypatch.setattr(S, "run_sweep", lambda *args, **kwargs: seen.update(kwargs) or S.SweepReport())
    from effnet_lab.__main__ import main as cli

    assert cli(["sweep", "compare", "--quick", "--packed", "--out", str(tmp_path), "--no-progress"]) == 0
    assert seen["packed"] is True


def test_a_diverged_seed_is_recorded_as_failed_and_its_group_goes_on(cifar10, tmp_path, monkeypatch):
    group = baseline_seeds(epochs=1)
    build = X.Run.build_model

    def build_model(self):  # seed 1's classifier gives NaN from the first step: its loss is NaN
        model = build(self)
        if self.seed == 1:
            with torch.no_grad():
                model.classifier[-1].weight.fill_(float("nan"))
        return model

    monkeypatch.setattr(X.Run, "build_model", build_model)
    with pytest.raises(packed_train.NonFiniteLossError, match="seed\\(s\\) 1 became nan in epoch 1") as error:
        train_seeds(group, data=cifar10, out=tmp_path / "alone", progress=False)
    assert error.value.runs == [group[1]]

    S.run_sweep(group, tmp_path / "sweep", data=cifar10, progress=False, packed=True, log=lambda line: None)
    records = [json.loads((S.run_folder(run, tmp_path / "sweep") / RECORD_FILE).read_text()) for run in group]
    assert records[1]["status"] == "failed" and records[1]["test_accuracy"] is None
    assert records[0]["status"] == "complete" and isinstance(records[0]["test_accuracy"], float)
