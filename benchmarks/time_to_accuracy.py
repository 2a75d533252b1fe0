"""Time to accuracy: how soon does the CIFAR B0 baseline reach 90% test accuracy?

The target: EfficientNet-B0 with the cifar stem, trained from scratch on CIFAR-10, reaches at
least 90% test accuracy within 5 minutes of training on one large GPU (an H100 or H200). The
run records its test accuracy after every epoch against wall time. The recipe is
``time-to-accuracy`` in ``effnet_lab/recipes.py``, fixed before any GPU run.

How it fits a budget: a probe trains the recipe itself, as it will run (all the training
images, the same model, the weight average, compiled or not), for two epochs. The second
epoch's seconds, test pass included, are what every later epoch costs; what the first took
beyond that is the start-up (cuDNN's algorithm search, ``cudnn.benchmark``; compilation with
``--compile``). The plan is as many epochs as fit in 95% of ``--budget-seconds`` after the
start-up. It is saved, so a rerun of the same command uses the same plan and *resumes* the
training run from its last checkpoint (written about every 30 seconds); ``--plan-only``
stops after the plan.

Why the probe is the recipe itself: a first H200 run planned from a cheaper probe (a
1,000-per-class subset, uncompiled, no weight average). It planned 73 epochs where 4.7 s
each after 78 s of start-up (compilation) fitted 44, and a 7-minute time limit stopped the
run at epoch 69 (``results/time-to-accuracy/attempt-1/``).

It writes into ``--out``:

- ``plan.json``: the probe's measurement and the chosen recipe;
- ``run/record.json``: the training record (every field of ``effnet_lab.train``);
- ``summary.json``: the time to 90% (``null`` if never reached), the final accuracy and
  how it was made (command, device, data copy, commit, date);
- ``accuracy_vs_time.png``: the accuracy curve against wall time;
- ``partial.json`` instead of the summary when the run is interrupted (SIGINT, Ctrl-C): the
  curve up to its last checkpoint.

    PYTHONPATH=. python benchmarks/time_to_accuracy.py --data ../shared/data/cifar10-jpeg.tar.gz
    PYTHONPATH=. python benchmarks/time_to_accuracy.py --quick --out /tmp/tta   # a CPU check, a minute

``python -m effnet_lab reproduce time-to-accuracy`` runs it into ``results/time-to-accuracy/``.
It runs from a checkout with only PyTorch installed (no torchinfo, ipywidgets or seaborn).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

import torch  # noqa: E402

from effnet_lab import recipes, settings  # noqa: E402
from effnet_lab.checks import positive_float, positive_int  # noqa: E402
from effnet_lab.data import load_cifar  # noqa: E402
from effnet_lab.files import atomic_write, write_json  # noqa: E402
from effnet_lab.plots import plot_time_to_accuracy  # noqa: E402
from effnet_lab.train import CHECKPOINT_FILE, TrainConfig, build_model, train  # noqa: E402

TARGET_ACCURACY = 0.90
MODEL = dict(variant="b0", stem="cifar")
QUICK_MODEL = dict(MODEL, width=0.25, depth=0.25)  # with the recipe's quick sizes: a CPU in a minute
QUICK_BUDGET_SECONDS = 20.0
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
    parser.add_argument("--quick", action="store_true",
                        help=f"the recipe's quick sizes and a narrow model, a CPU check (also {settings.QUICK_ENV}=1)")
    parser.add_argument("--plan-only", action="store_true", help="probe, save the plan and stop")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars (for a log)")
    args = parser.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    quick = settings.quick_mode(args.quick or None)
    data = load_cifar("cifar10", args.data, progress=args.progress)
    model_spec = dict(QUICK_MODEL if quick else MODEL)
    recipe = recipes.fields("time-to-accuracy", quick, compile=args.compile, amp=args.amp)
    if quick:
        args.budget_seconds = min(args.budget_seconds, QUICK_BUDGET_SECONDS)
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
                       model_spec=plan["model"], command=command, checkpoint_every=plan.get("checkpoint_every", 1),
                       progress=args.progress)
    except KeyboardInterrupt:  # a time limit's SIGINT or Ctrl-C: keep what was measured
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
        "quick": quick,
    }
    write_json(out / "summary.json", summary)
    (out / "partial.json").unlink(missing_ok=True)  # an earlier interruption's, now superseded
    title = f"CIFAR-10 B0 (cifar stem) on {record['device']}" + (" [quick mode: not a result]" if quick else "")
    plot(curve, out / "accuracy_vs_time.png", title)
    verdict = (f"reached {TARGET_ACCURACY:.0%} after {summary['seconds_to_target']:.0f} s "
               f"(epoch {summary['epoch_reaching_target']})" if summary["seconds_to_target"] is not None
               else f"did not reach {TARGET_ACCURACY:.0%}")
    print(f"{verdict}; final {record['test_accuracy']:.2%} after {record['train_seconds']:.0f} s on {record['device']}")
    print(f"summary: {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
