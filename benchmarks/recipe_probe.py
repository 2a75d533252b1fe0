"""The first steps of each candidate recipe of the scaling comparison: does every seed learn?

Before a GPU trains the comparison's recipe candidates to the end (the pilot), the CPU can
answer the short-horizon question cheaply: in the first ``--steps`` steps of the full-scale
recipe (its real learning-rate schedule, batch and model), does the training loss fall for
every seed, or does a seed stall at chance? Each candidate of ``effnet_lab.recipes.CANDIDATES``
trains the comparison's baseline from ``--seeds`` seeds; after the last step the model is
evaluated on ``--test-images`` test images twice: with the batch-norm statistics as training
left them, and with statistics re-estimated over 20 batches of training images at the final
weights (to tell noise in the statistics from noise in the weights).

    PYTHONPATH=. python benchmarks/recipe_probe.py --out results/recipe-probe/probe.json
    PYTHONPATH=. python benchmarks/recipe_probe.py --quick --out /tmp/probe.json   # a minute

It writes a JSON table (one row per candidate and seed: the loss at each logged step, the two
accuracies, seconds) with how it was made (device, versions, commit, date, command). It runs
from a checkout with only PyTorch installed.
"""

from __future__ import annotations

import argparse
import datetime
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from effnet_lab import experiments, recipes, settings  # noqa: E402
from effnet_lab.checks import positive_int  # noqa: E402
from effnet_lab.data import DeviceLoader, load_cifar  # noqa: E402
from effnet_lab.files import write_json  # noqa: E402
from effnet_lab.train import TrainConfig, evaluate, make_optimizer, make_schedule  # noqa: E402


def probe(candidate: str, seed: int, data, steps: int, test_images: int, device: torch.device, quick: bool) -> dict:
    """Train the baseline under one candidate for ``steps`` steps of its real schedule."""
    run = next(r for r in experiments.plan("pilot", quick=quick, seeds=[seed])
               if r.recipe == candidate and r.train["epochs"] == recipes.fields("comparison", quick)["epochs"])
    config: TrainConfig = run.train_config(device=str(device))
    model = run.build_model().to(device).to(memory_format=torch.channels_last)
    subset = data.subset(config.subset_per_class, seed, test_per_class=max(1, test_images // 10))
    loader_args = dict(resolution=config.resolution, device=device, channels_last=True)
    train_loader = DeviceLoader.from_data(subset, "train", config.batch_size, seed=seed, augment=config.augment,
                                          **loader_args)
    test_loader = DeviceLoader.from_data(subset, "test", 500, **loader_args)
    optimizer = make_optimizer(model, config)
    schedule = make_schedule(optimizer, config, len(train_loader))
    torch.manual_seed(seed)
    losses, step, start = [], 0, time.perf_counter()
    epoch = 0
    while step < steps:
        train_loader.set_epoch(epoch)
        for images, labels in train_loader:
            loss = F.cross_entropy(model(images), labels, label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            if step == 1 or step % 10 == 0 or step == steps:
                losses.append({"step": step, "train_loss": loss.item(), "lr": optimizer.param_groups[0]["lr"]})
            if step == steps:
                break
        epoch += 1
    seconds = time.perf_counter() - start
    accuracy = evaluate(model, test_loader)
    # The same weights, batch-norm statistics re-estimated at them (cumulative average).
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    model.train()
    with torch.no_grad():
        for index, (images, _) in enumerate(train_loader):
            model(images)
            if index == 19:
                break
    recalibrated = evaluate(model, test_loader)
    return {"candidate": candidate, "seed": seed, "steps": steps, "batch_size": config.batch_size,
            "changes": recipes.CANDIDATES[candidate], "first_loss": losses[0]["train_loss"],
            "last_loss": losses[-1]["train_loss"], "loss_curve": losses, "test_accuracy": accuracy,
            "test_accuracy_bn_recalibrated": recalibrated, "test_images": len(subset.test_labels),
            "seconds": round(seconds, 1), "chance_loss": math.log(10)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=positive_int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--candidates", nargs="+", choices=list(recipes.CANDIDATES), default=list(recipes.CANDIDATES))
    parser.add_argument("--test-images", type=positive_int, default=2000)
    parser.add_argument("--quick", action="store_true", help="quick mode's baseline and recipe, 10 steps")
    parser.add_argument("--data", help="folder or .tar.gz with the images (default: found)")
    parser.add_argument("--device", help="cpu or cuda (default: the GPU when there is one)")
    parser.add_argument("--threads", type=positive_int, default=1,
                        help="CPU threads (default 1: on a busy 2-core machine two threads wait for each other)")
    parser.add_argument("--out", type=Path, help="write the table here (JSON)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.steps, args.test_images = min(args.steps, 10), min(args.test_images, 200)
    device = torch.device(args.device) if args.device else settings.default_device()
    data = load_cifar("cifar10", args.data, progress=False)
    rows = []
    for candidate in args.candidates:
        for seed in args.seeds:
            row = probe(candidate, seed, data, args.steps, args.test_images, device, args.quick)
            rows.append(row)
            print(f"{candidate:<14} seed {seed}: loss {row['first_loss']:.2f} -> {row['last_loss']:.2f}, "
                  f"test {row['test_accuracy']:.1%} (BN re-estimated {row['test_accuracy_bn_recalibrated']:.1%}), "
                  f"{row['seconds']:.0f} s", flush=True)
            if args.out:  # after every row: an interrupted probe keeps what it measured
                write_json(args.out, {"rows": rows, "device": settings.device_name(device),
                                      "torch_version": torch.__version__, "git_commit": settings.git_commit(),
                                      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                                      "data_source": data.source, "quick": args.quick,
                                      "command": ["python", "benchmarks/recipe_probe.py", *(argv or sys.argv[1:])]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
