"""Time to accuracy: how soon does the CIFAR B0 baseline reach 90% test accuracy? (GPU issue, item 2)

The target: EfficientNet-B0 with the cifar stem, trained from scratch on the CIFAR-10 copy at
``../shared/data/``, reaches at least 90% test accuracy within 5 minutes of training on one
H100. The run records its test accuracy after every epoch against wall time.

How it fits a budget: a short probe run (the same recipe on a 1,000-per-class subset, two
epochs, no compile) measures the seconds an epoch costs; the script then picks as many
epochs as fit in ``--budget-seconds`` (with a margin) and saves that plan, so a rerun of the
same command uses the same plan and *resumes* the training run from its last checkpoint
(written about every 30 seconds); ``--plan-only`` stops after the plan, so that probing and
training can run as two shorter steps. It writes into ``--out``:

- ``plan.json``: the probe's measurement and the chosen recipe;
- ``run/record.json``: the training record (every field of ``effnet_lab.train``);
- ``summary.json``: the time to 90% (``null`` if never reached), the final accuracy and
  how it was made (command, device, data copy, commit, date);
- ``accuracy_vs_time.png``: the accuracy curve against wall time.

    PYTHONPATH=. python benchmarks/time_to_accuracy.py --data ../shared/data/cifar10-jpeg.tar.gz
    PYTHONPATH=. python benchmarks/time_to_accuracy.py --tiny --out /tmp/tta   # CPU smoke test

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

from effnet_lab.checks import positive_float, positive_int  # noqa: E402
from effnet_lab.data import load_cifar  # noqa: E402
from effnet_lab.files import atomic_write, write_json  # noqa: E402
from effnet_lab.plots import plot_time_to_accuracy  # noqa: E402
from effnet_lab.train import TrainConfig, build_model, train  # noqa: E402

TARGET_ACCURACY = 0.90
# The recipe, fixed before any GPU run (not tuned on the test set): B0 as published, on the
# cifar stem; SGD with Nesterov momentum, batch 512, peak lr 0.4 after one warm-up epoch,
# cosine to zero, label smoothing 0.1, weight decay 5e-4, EMA of the weights.
MODEL = dict(variant="b0", stem="cifar")
RECIPE = dict(batch_size=512, lr=0.4, warmup_epochs=1.0, label_smoothing=0.1, weight_decay=5e-4,
              ema=True, ema_decay=0.999, resolution=32)
PROBE_PER_CLASS = 1000


def probe_epoch_seconds(data, recipe: dict, out: Path, per_class: int) -> dict:
    """Seconds of one full epoch (training + evaluation), measured on a subset and scaled up.

    The second epoch of a two-epoch probe is timed (the first pays for start-up and cuDNN's
    algorithm search). It includes evaluating the whole test set, so scaling it by the ratio
    of training images overestimates a full epoch a little: a safe side to err on.
    """
    config = TrainConfig(**{**recipe, "epochs": 2, "subset_per_class": per_class, "compile": False,
                            "ema": False, "warmup_epochs": 0.5})
    record = train(build_model(**MODEL), config, data=data, run_dir=out / "probe", progress=False)
    curve = record["accuracy_curve"]
    second_epoch = curve[1]["seconds"] - curve[0]["seconds"]
    per_class = recipe.get("subset_per_class")
    run_images = per_class * data.num_classes if per_class else len(data.train_labels)
    scale = run_images / record["train_images"]
    return {"probe_second_epoch_seconds": second_epoch, "train_images_scale": scale,
            "epoch_seconds_estimate": second_epoch * scale,
            "probe_images_per_second": record["images_per_second"], "device": record["device"]}


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
    args = parser.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_cifar("cifar10", args.data, progress=True)
    model_spec, recipe, probe_per_class = dict(MODEL), dict(RECIPE), PROBE_PER_CLASS
    if args.tiny:  # the same code path, small enough for two CPU cores in a minute
        model_spec.update(width=0.25, depth=0.25)
        recipe.update(batch_size=64, lr=0.05, resolution=16, subset_per_class=60, test_per_class=20)
        probe_per_class = 20
        args.budget_seconds = min(args.budget_seconds, 20.0)
    recipe["compile"] = args.compile
    recipe["amp"] = args.amp

    plan_path = out / "plan.json"
    if plan_path.exists():  # a rerun: the same plan, so the training run resumes
        plan = json.loads(plan_path.read_text())
        print(f"resuming the plan in {plan_path}: {plan['epochs']} epochs")
    else:
        plan = {"budget_seconds": args.budget_seconds, "model": model_spec, "recipe": recipe}
        if args.epochs:
            plan["epochs"] = args.epochs
        else:
            plan.update(probe_epoch_seconds(data, recipe, out, probe_per_class))
            # 90% of the budget: compile time and the last evaluation must fit in it too.
            plan["epochs"] = max(1, int(0.9 * args.budget_seconds // plan["epoch_seconds_estimate"]))
            # A checkpoint about every 30 s: on a GPU an epoch takes about as long as writing one.
            plan["checkpoint_every"] = max(1, round(30 / plan["epoch_seconds_estimate"]))
        write_json(plan_path, plan)
        print(f"plan: {plan['epochs']} epochs within {args.budget_seconds:.0f} s ({plan_path})")
    if args.plan_only:
        return 0

    config = TrainConfig(**{**plan["recipe"], "epochs": plan["epochs"]})
    command = [sys.executable, *sys.argv]
    torch.manual_seed(config.seed)  # the seed decides the initial weights too, not only the data order
    record = train(build_model(**plan["model"]), config, data=data, run_dir=out / "run",
                   model_spec=plan["model"], command=command, checkpoint_every=plan.get("checkpoint_every", 1))

    curve = record["accuracy_curve"]
    reached = next((p for p in curve if p["test_accuracy"] >= TARGET_ACCURACY), None)
    summary = {
        "target_accuracy": TARGET_ACCURACY,
        "seconds_to_target": reached["seconds"] if reached else None,
        "epoch_reaching_target": reached["epoch"] if reached else None,
        "final_test_accuracy": record["test_accuracy"],
        "train_seconds": record["train_seconds"],
        "within_5_minutes": bool(reached and reached["seconds"] <= 300),
        "epochs": record["epochs"],
        "images_per_second": record["images_per_second"],
        "device": record["device"],
        "data_source": record["data_source"],
        "test_set": record["test_set"],
        "git_commit": record["git_commit"],
        "torch_version": record["torch_version"],
        "command": command,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "tiny_smoke_test": args.tiny,
    }
    write_json(out / "summary.json", summary)
    title = f"CIFAR-10 B0 (cifar stem) on {record['device']}" + (" [tiny smoke test]" if args.tiny else "")
    plot(curve, out / "accuracy_vs_time.png", title)
    verdict = (f"reached {TARGET_ACCURACY:.0%} after {reached['seconds']:.0f} s (epoch {reached['epoch']})"
               if reached else f"did not reach {TARGET_ACCURACY:.0%}")
    print(f"{verdict}; final {record['test_accuracy']:.2%} after {record['train_seconds']:.0f} s on {record['device']}")
    print(f"summary: {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
