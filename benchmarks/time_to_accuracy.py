"""Time to accuracy: how soon does the CIFAR B0 baseline reach 90% test accuracy? (GPU issue, item 2)

The target: EfficientNet-B0 with the cifar stem, trained from scratch on the CIFAR-10 copy at
``../shared/data/``, reaches at least 90% test accuracy within 5 minutes of training on one
H100. The run records its test accuracy after every epoch against wall time.

How it fits a budget: a probe trains the recipe itself, as it will run (all the training
images, the same model, the weight average, compiled or not), for two epochs. The second
epoch's seconds, test pass included, are what every later epoch costs; what the first took
beyond that is the start-up (cuDNN's algorithm search, ``cudnn.benchmark``; compilation with
``--compile``). The plan is as many epochs as fit in 95% of ``--budget-seconds`` after the
start-up. It is saved, so a rerun of the same command uses the same plan and *resumes* the
training run from its last checkpoint (written about every 30 seconds); ``--plan-only``
stops after the plan, so that probing and training can run as two shorter steps.

Why the probe is the recipe itself: the first H200 attempt planned from a cheaper probe (a
1,000-per-class subset, uncompiled, no weight average). It planned 73 epochs where 4.7 s
each after 78 s of start-up (compilation) fitted 44, and the call's deadline stopped the run
at epoch 69 (``results/time-to-accuracy/attempt-1/``).

It writes into ``--out``:

- ``plan.json``: the probe's measurement and the chosen recipe;
- ``run/record.json``: the training record (every field of ``effnet_lab.train``);
- ``summary.json``: the time to 90% (``null`` if never reached), the final accuracy and
  how it was made (command, device, data copy, commit, date);
- ``accuracy_vs_time.png``: the accuracy curve against wall time;
- ``partial.json`` instead of the summary when the run is interrupted (a call's deadline,
  Ctrl-C): the curve up to its last checkpoint, so that an interrupted GPU call still brings
  back what it measured.

    PYTHONPATH=. python benchmarks/time_to_accuracy.py --data ../shared/data/cifar10-jpeg.tar.gz
    PYTHONPATH=. python benchmarks/time_to_accuracy.py --tiny --out /tmp/tta   # CPU smoke test
    PYTHONPATH=. python benchmarks/time_to_accuracy.py --from-log LOG --out DIR
        # the curve of a run stopped before any checkpoint, read back from its printed log

It runs from a checkout with only PyTorch installed (no torchinfo, ipywidgets or seaborn).
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

import torch  # noqa: E402

from effnet_lab import settings  # noqa: E402
from effnet_lab.checks import positive_float, positive_int  # noqa: E402
from effnet_lab.data import load_cifar  # noqa: E402
from effnet_lab.files import atomic_write, write_json  # noqa: E402
from effnet_lab.plots import plot_time_to_accuracy  # noqa: E402
from effnet_lab.train import CHECKPOINT_FILE, TrainConfig, build_model, train  # noqa: E402

TARGET_ACCURACY = 0.90
# The recipe, fixed before any GPU run (not tuned on the test set): B0 as published, on the
# cifar stem; SGD with Nesterov momentum, batch 512, peak lr 0.4 after one warm-up epoch,
# cosine to zero, label smoothing 0.1, weight decay 5e-4, EMA of the weights.
MODEL = dict(variant="b0", stem="cifar")
RECIPE = dict(batch_size=512, lr=0.4, warmup_epochs=1.0, label_smoothing=0.1, weight_decay=5e-4,
              ema=True, ema_decay=0.999, resolution=32)
# The plan's share of the budget: epochs vary by a few percent (the first attempt's steps
# ran at 16.7-20.3 per second), and the last test pass must fit too.
BUDGET_SHARE = 0.95


def probe_epoch_seconds(data, model_spec: dict, recipe: dict, out: Path) -> dict:
    """Seconds of one epoch of ``recipe`` (training and the test pass), and of its start-up.

    Two epochs of the recipe as it will run. The first pays for start-up (cuDNN's algorithm
    search; compilation); the second costs what every later epoch will.
    """
    config = TrainConfig(**{**recipe, "epochs": 2})
    record = train(build_model(**model_spec, seed=config.seed), config, data=data, run_dir=out / "probe",
                   progress=False)
    curve = record["accuracy_curve"]
    epoch = curve[1]["seconds"] - curve[0]["seconds"]
    return {"probe_epoch_seconds": epoch, "probe_startup_seconds": max(0.0, curve[0]["seconds"] - epoch),
            "probe_images_per_second": record["images_per_second"], "device": record["device"]}


def plan_epochs(budget_seconds: float, epoch_seconds: float, startup_seconds: float) -> int:
    """As many epochs as fit in BUDGET_SHARE of the budget after the start-up (at least one)."""
    return max(1, int((BUDGET_SHARE * budget_seconds - startup_seconds) // epoch_seconds))


def target_fields(curve: list[dict]) -> dict:
    """When an accuracy curve first reached the target (None if it never did)."""
    reached = next((point for point in curve if point["test_accuracy"] >= TARGET_ACCURACY), None)
    return {"target_accuracy": TARGET_ACCURACY,
            "seconds_to_target": reached["seconds"] if reached else None,
            "epoch_reaching_target": reached["epoch"] if reached else None,
            "within_5_minutes": bool(reached and reached["seconds"] <= 300)}


_EPOCH_LINE = re.compile(r"^epoch (\d+)/(\d+): test accuracy ([\d.]+)%, train loss ([\d.]+)")
_ELAPSED = re.compile(r"\[(?:(\d+):)?(\d+):(\d+)<")
# The first line of a benchmarks/gpu_jobs.py log: the GPU, the call's date and the data copy
# (gpu_jobs writes it in main() and reads it back with its own HEADER).
_GPU_JOBS_HEADER = re.compile(r"^gpu_jobs .* on (?P<device>[^,]+), .*?, (?P<date>\d{4}-\d\d-\d\dT[\d:]+[+-]\d\d:\d\d), "
                              r"data (?P<data>\S+)")


def curve_from_log(text: str) -> tuple[list[dict], int]:
    """The accuracy curve of a training run read back from its printed log, and its planned epochs.

    Each ``epoch N/M: test accuracy X%`` line gets the elapsed time of the next progress-bar
    line (``[MM:SS<``, printed after the test pass): whole seconds since the bar started, which
    is when the training record's clock starts too.
    """
    lines = text.replace("\r", "\n").splitlines()
    curve, planned = [], 0
    for number, line in enumerate(lines):
        match = _EPOCH_LINE.match(line.strip())
        if not match:
            continue
        planned = int(match.group(2))
        elapsed = next((_ELAPSED.search(later) for later in lines[number + 1:] if _ELAPSED.search(later)), None)
        if elapsed is None:
            break  # the log ends before the time of this epoch was printed
        hours, minutes, seconds = (int(group or 0) for group in elapsed.groups())
        curve.append({"epoch": int(match.group(1)), "seconds": float(3600 * hours + 60 * minutes + seconds),
                      "test_accuracy": round(float(match.group(3)) / 100, 6), "train_loss": float(match.group(4))})
    return curve, planned


def provenance_from_log(text: str) -> dict:
    """The GPU, the date and the data copy that a gpu_jobs log's first line names (empty if none)."""
    header = _GPU_JOBS_HEADER.match(text.lstrip())
    if header is None:
        return {}
    return {"device": header["device"], "run_date": header["date"], "data_source": header["data"]}


def write_partial(out: Path, curve: list[dict], planned_epochs: int, reason: str, **provenance) -> dict:
    """``partial.json`` and the figure of a run that stopped before its last epoch."""
    partial = {"status": "interrupted", "reason": reason, **target_fields(curve),
               "epochs_done": len(curve), "epochs_planned": planned_epochs, "accuracy_curve": curve,
               "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), **provenance}
    write_json(out / "partial.json", partial)
    if curve:
        plot(curve, out / "accuracy_vs_time.png",
             f"B0 on {provenance.get('device', '?')}: INTERRUPTED, epoch {len(curve)} of {planned_epochs}")
    return partial


def plot(curve: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plot_time_to_accuracy(curve, title=title, target=TARGET_ACCURACY, minutes=5)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120))
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="CIFAR-10 folder or .tar.gz (default: EFFNET_LAB_DATA or found)")
    parser.add_argument("--out", default="results/time-to-accuracy", help="folder for the plan, run and summary")
    parser.add_argument("--budget-seconds", type=positive_float, default=300.0, help="training time to plan for")
    parser.add_argument("--epochs", type=positive_int, help="skip the probe and train this many epochs")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (CUDA)")
    parser.add_argument("--no-amp", dest="amp", action="store_false", help="fp32 on CUDA instead of bf16 autocast")
    parser.add_argument("--tiny", action="store_true", help="a CPU smoke test: tiny subsets, a narrow model")
    parser.add_argument("--plan-only", action="store_true",
                        help="probe, save the plan and stop (a later run trains it: two shorter steps)")
    parser.add_argument("--from-log", metavar="LOG",
                        help="write partial.json from the printed log of a run stopped before any checkpoint")
    args = parser.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.from_log:
        log = Path(args.from_log)
        if not log.is_file():
            parser.error(f"--from-log: no such file: {log}")
        text = log.read_text(errors="replace")
        curve, planned = curve_from_log(text)
        if not curve:
            parser.error(f"--from-log: {log} holds no finished epoch ('epoch N/M: test accuracy X%' lines)")
        partial = write_partial(out, curve, planned, "read back from the printed log of a stopped run",
                                curve_source=f"{log.name}: the progress bar's elapsed time after each test pass "
                                             "(whole seconds)", command=[sys.executable, *sys.argv],
                                **provenance_from_log(text))
        print(f"{len(curve)} epochs of {planned} read from {log}: {out / 'partial.json'}"
              + (f"; {TARGET_ACCURACY:.0%} first at epoch {partial['epoch_reaching_target']}, "
                 f"{partial['seconds_to_target']:.0f} s" if partial["seconds_to_target"] is not None else ""))
        return 0
    data = load_cifar("cifar10", args.data, progress=True)
    model_spec, recipe = dict(MODEL), dict(RECIPE)
    if args.tiny:  # the same code path, small enough for two CPU cores in a minute
        model_spec.update(width=0.25, depth=0.25)
        recipe.update(batch_size=64, lr=0.05, resolution=16, subset_per_class=60, test_per_class=20)
        args.budget_seconds = min(args.budget_seconds, 20.0)
    recipe["compile"] = args.compile
    recipe["amp"] = args.amp
    # Every step has the same shapes, so let cuDNN time its algorithms once and keep the fastest
    # (timm's training script does the same). A speed setting, not part of the recipe: the probe
    # measures the epoch with it, and its first epoch pays for the timing (the start-up).
    torch.backends.cudnn.benchmark = True

    plan_path = out / "plan.json"
    if plan_path.exists():  # a rerun: the same plan, so the training run resumes
        plan = json.loads(plan_path.read_text())
        print(f"resuming the plan in {plan_path}: {plan['epochs']} epochs")
    else:
        plan = {"budget_seconds": args.budget_seconds, "model": model_spec, "recipe": recipe,
                "cudnn_benchmark": torch.backends.cudnn.benchmark}
        if args.epochs:
            plan["epochs"] = args.epochs
        else:
            plan.update(probe_epoch_seconds(data, model_spec, recipe, out))
            plan["epochs"] = plan_epochs(args.budget_seconds, plan["probe_epoch_seconds"],
                                         plan["probe_startup_seconds"])
            # A checkpoint about every 30 s: on a GPU an epoch takes about as long as writing one.
            plan["checkpoint_every"] = max(1, round(30 / plan["probe_epoch_seconds"]))
        write_json(plan_path, plan)
        measured = (f": {plan['probe_epoch_seconds']:.2f} s an epoch after {plan['probe_startup_seconds']:.0f} s "
                    f"of start-up" if "probe_epoch_seconds" in plan else "")
        print(f"plan: {plan['epochs']} epochs within {args.budget_seconds:.0f} s{measured} ({plan_path})")
    if args.plan_only:
        return 0

    config = TrainConfig(**{**plan["recipe"], "epochs": plan["epochs"]})
    command = [sys.executable, *sys.argv]
    try:  # the seed decides the initial weights too, not only the data order
        record = train(build_model(**plan["model"], seed=config.seed), config, data=data, run_dir=out / "run",
                       model_spec=plan["model"], command=command, checkpoint_every=plan.get("checkpoint_every", 1))
    except KeyboardInterrupt:  # a GPU call's deadline (SIGINT) or Ctrl-C: keep what was measured
        checkpoint = out / "run" / CHECKPOINT_FILE
        curve = torch.load(checkpoint, map_location="cpu", weights_only=True)["curve"] if checkpoint.exists() else []
        write_partial(out, curve, plan["epochs"], "interrupted: the curve up to the last checkpoint "
                      f"(one every {plan.get('checkpoint_every', 1)} epochs); rerun the same command to resume",
                      device=settings.device_name(config.device), data_source=data.source,
                      git_commit=settings.git_commit(), torch_version=torch.__version__, command=command)
        print(f"interrupted after {len(curve)} checkpointed epochs of {plan['epochs']}: {out / 'partial.json'}")
        return 130

    curve = record["accuracy_curve"]
    summary = {
        **target_fields(curve),
        "final_test_accuracy": record["test_accuracy"],
        "train_seconds": record["train_seconds"],
        "epochs": record["epochs"],
        "images_per_second": record["images_per_second"],
        "device": record["device"],
        "data_source": record["data_source"],
        "test_set": record["test_set"],
        "git_commit": record["git_commit"],
        "torch_version": record["torch_version"],
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "command": command,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tiny_smoke_test": args.tiny,
    }
    write_json(out / "summary.json", summary)
    (out / "partial.json").unlink(missing_ok=True)  # an earlier interruption's, now superseded
    title = f"CIFAR-10 B0 (cifar stem) on {record['device']}" + (" [tiny smoke test]" if args.tiny else "")
    plot(curve, out / "accuracy_vs_time.png", title)
    verdict = (f"reached {TARGET_ACCURACY:.0%} after {summary['seconds_to_target']:.0f} s "
               f"(epoch {summary['epoch_reaching_target']})" if summary["seconds_to_target"] is not None
               else f"did not reach {TARGET_ACCURACY:.0%}")
    print(f"{verdict}; final {record['test_accuracy']:.2%} after {record['train_seconds']:.0f} s on {record['device']}")
    print(f"summary: {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
