"""Training: one function, one command line, one JSON record per run (lesson 05).

``train(model, config)`` trains any ``nn.Module`` on CIFAR and returns a *record*: the test
accuracy after every epoch, the time it took, the images per second, the peak memory, and
everything needed to say how the number was made (configuration, data copy, device,
commit, date). The sweeps, the plots and the lessons all consume these records.

What it does, and why:

- SGD with Nesterov momentum (or AdamW); the learning rate warms up linearly, then follows
  a cosine (or one-cycle) schedule, updated every step. No weight decay on batch-norm
  parameters and biases: shrinking them does not regularise anything, it only fights BN.
- Label smoothing, optional EMA of the weights (evaluated instead of the raw weights).
- channels_last memory format: on CUDA, bf16 depthwise convolutions in NCHW fall back to
  slow kernels and channels_last sends them to cuDNN; on CPUs (oneDNN) it is faster too
  (10-25% per training step here). On CUDA, bf16 autocast; optionally ``torch.compile``.
- A checkpoint after every epoch, written atomically. Rerunning with the same ``run_dir``
  (the same command) resumes from it and ends with the result an uninterrupted run gets:
  the data order depends only on (seed, epoch), and the random-number states are saved.
- A loss that turns NaN or infinite stops the run with ``NonFiniteLossError``.
- Under ``torchrun``, the same call trains data-parallel (DistributedDataParallel).

Its parts live beside it: ``TrainConfig`` and the named recipes in ``recipes.py``, the
optimizer, schedule and weight average in ``optim.py``, the processes of a data-parallel
run in ``distributed.py``, the run folder and its record in ``record.py``.

Command line: ``python -m effnet_lab train --model b0 --epochs 30 --out runs/b0`` (see
``python -m effnet_lab train --help``); ``--quick`` for a run of seconds on a CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import settings
from .checks import check_int
from .data import NUM_CLASSES, CifarData, DeviceLoader, load_cifar
from .distributed import all_reduce_sum, barrier, start_processes
from .files import save_torch, write_json
from .optim import (  # noqa: F401 (WarmupCosine: part of train's interface)
    EMA, WarmupCosine, autocast, choose_precision, make_optimizer, make_schedule, take_step,
)
from .record import CHECKPOINT_FILE, RECORD_FILE, describe_model, make_record, peak_memory, run_folder_state  # noqa: F401
from .recipes import OPTIMIZERS, PRECISIONS, SCHEDULES, TrainConfig  # noqa: F401 (part of train's interface)

CHECKPOINT_FORMAT = 1
class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite: the run cannot recover, so it stops."""


# The model of ``python -m effnet_lab train``: B0 on the cifar stem; in quick mode at width and
# depth 0.25 (one block per stage), which learns most in a CPU's minute (recipes.py, "train").
QUICK_MODEL = dict(variant="b0", width=0.25, depth=0.25, stem="cifar", dropout=0.0, drop_path_rate=0.0)
FULL_MODEL = dict(variant="b0", stem="cifar")


def default_config(quick: bool | None = None, **overrides) -> TrainConfig:
    """The "train" recipe (``effnet_lab.recipes``): a full run, or a quick one when quick mode is
    on (``EFFNET_LAB_QUICK=1``)."""
    from . import recipes

    return recipes.config("train", quick, **overrides)


def build_model(
    variant: str | None = "b0",
    *,
    width: float | None = None,
    depth: float | None = None,
    stem: str = "cifar",
    dropout: float | None = None,
    drop_path_rate: float | None = None,
    num_classes: int = 10,
    seed: int | None = None,
) -> nn.Module:
    """An effnet_lab EfficientNet from command-line style arguments: a published ``variant``
    ('b0'..'b7', 'lite0'..'lite4'), whose width, depth, dropout and stochastic depth the
    other arguments override, or plain ``width``/``depth`` (B0 scaled) with ``variant=None``.
    ``seed`` fixes the initial weights (``model.build``)."""
    from .model import EfficientNetConfig, build, variant_config

    overrides = {key: value for key, value in dict(width=width, depth=depth, dropout=dropout,
                                                   drop_path_rate=drop_path_rate).items() if value is not None}
    if variant is None:
        config = EfficientNetConfig(num_classes=num_classes, stem=stem, **overrides)
    else:
        config = variant_config(variant, num_classes, stem=stem, **overrides)
    return build(config, seed=seed)


@torch.no_grad()
def evaluate(model: nn.Module, loader: DeviceLoader, *, precision: str = "fp32") -> float:
    """Top-1 accuracy of ``model`` on every image of ``loader`` (summed over all processes under DDP)."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=loader.device)
    seen = torch.zeros((), dtype=torch.int64, device=loader.device)
    with autocast(loader.device, precision):
        for images, labels in loader:
            correct += (model(images).argmax(1) == labels).sum()
            seen += len(labels)
    model.train(was_training)
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(correct)
        dist.all_reduce(seen)
    return correct.item() / max(1, seen.item())


# Settings that may change between a run and its resumption without changing its result.
_RESUMABLE_CHANGES = {"compile", "eval_batch_size", "device", "data"}


def _check_same_run(saved: dict, config: TrainConfig, model_description: dict, path: Path) -> None:
    current = config.to_dict()
    changed = [key for key in current if key not in _RESUMABLE_CHANGES and saved["config"].get(key) != current[key]]
    if changed:
        details = ", ".join(f"{key} {saved['config'].get(key)!r} -> {current[key]!r}" for key in changed)
        raise ValueError(f"{path.parent} holds a run with other settings ({details}): choose another run folder, or delete it")
    if "model" in saved and saved["model"] != json.loads(json.dumps(model_description, default=str)):
        raise ValueError(f"{path.parent} holds a run of a different model: choose another run folder, or delete it")


def _rng_states() -> dict:
    states = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


# --- the training loop -------------------------------------------------------------------


def train(
    model: nn.Module,
    config: TrainConfig | None = None,
    *,
    data: CifarData | None = None,
    run_dir: str | os.PathLike | None = None,
    progress: bool = True,
    model_spec: dict | None = None,
    command: list[str] | None = None,
    checkpoint_every: int = 1,
    run_info: dict | None = None,
) -> dict:
    """Train ``model`` on CIFAR as ``config`` says; return the run's record (a dict).

    ``data``: an already loaded ``CifarData`` (else ``load_cifar(config.dataset, config.data)``);
    the config's subsets are taken from it. ``run_dir``: where the checkpoint and
    ``record.json`` go; a run folder that holds a checkpoint is resumed, one that holds a
    finished record is returned as it is. Without it nothing is written.
    ``model_spec``: how the model was made (for the record). ``command``: the command line.
    ``run_info``: what a sweep knows about the run (experiment, family, seed...), kept in the
    record as its ``run`` section, so that a folder of run folders is a results table.
    ``checkpoint_every``: write the checkpoint every this many epochs (and after the last).
    On a GPU an epoch of CIFAR can take a second, about what writing a checkpoint takes: an
    interrupted run then loses a few epochs instead of spending half its time on checkpoints.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    checkpoint_every = check_int("checkpoint_every", checkpoint_every, minimum=1)
    config = config if config is not None else default_config()
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if data is not None and not isinstance(data, CifarData):
        raise TypeError(f"data must be a CifarData (from load_cifar), got {type(data).__name__}")
    minimum = getattr(model, "min_resolution", 1)
    if config.resolution < minimum:
        raise ValueError(f"resolution {config.resolution} is too small for this model: it needs at least {minimum} pixels")
    description = json.loads(json.dumps(describe_model(model, model_spec), default=str))
    run_dir = Path(run_dir).expanduser() if run_dir is not None else None
    checkpoint_path = run_dir / CHECKPOINT_FILE if run_dir else None
    record_path = run_dir / RECORD_FILE if run_dir else None

    if record_path is not None and record_path.exists():  # finished: the record is the result
        record = json.loads(record_path.read_text())
        _check_same_run(record, config, description, record_path)
        return record
    saved = None
    if checkpoint_path is not None and checkpoint_path.exists():
        try:
            saved = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        except Exception as error:
            raise ValueError(f"checkpoint {checkpoint_path} is unreadable ({error}); delete it to start over") from None
        _check_same_run(saved, config, description, checkpoint_path)

    processes = start_processes(config.device)
    try:
        return _train(model, config, data, processes, run_dir, saved, progress, description, command,
                      checkpoint_every, run_info)
    finally:
        if processes.started_here:
            import torch.distributed as dist

            dist.destroy_process_group()


def _train(model, config, data, processes, run_dir, saved, progress, description, command, checkpoint_every,
           run_info) -> dict:
    if config.device is not None:
        device = torch.device(config.device)
        if device.type == "cuda" and processes.world_size > 1:
            device = torch.device("cuda", processes.local_rank)
    elif processes.world_size > 1 and torch.cuda.is_available():
        device = torch.device("cuda", processes.local_rank)
    else:
        device = settings.default_device()
    on_cuda = device.type == "cuda"
    if on_cuda and not torch.cuda.is_available():
        raise ValueError(f"device {config.device!r} is not available here: PyTorch finds no CUDA GPU")
    precision = choose_precision(config, device)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    channels_last = config.channels_last

    # The data: the first process decodes (and caches) it, the others then read the cache.
    if data is None:
        if not processes.main:
            barrier(processes)
        data = load_cifar(config.dataset, config.data, progress=progress and processes.main)
        if processes.main:
            barrier(processes)
    if data.name != config.dataset:
        raise ValueError(f"config.dataset is {config.dataset!r} but the data given is {data.name!r}")
    data = data.subset(config.subset_per_class, config.seed, test_per_class=config.test_per_class)
    loader_args = dict(resolution=config.resolution, device=device, channels_last=channels_last,
                       rank=processes.rank, world_size=processes.world_size)
    train_loader = DeviceLoader.from_data(data, "train", config.batch_size, seed=config.seed,
                                          augment=config.augment, **loader_args)
    test_loader = DeviceLoader.from_data(data, "test", config.eval_batch_size, **loader_args)
    steps_per_epoch = len(train_loader)

    torch.manual_seed(config.seed + processes.rank)  # dropout and stochastic depth
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config)
    scheduler = make_schedule(optimizer, config, steps_per_epoch)
    ema = EMA(model, config.ema_decay) if config.ema else None

    start_epoch, curve, totals, resume_count = 0, [], {"seconds": 0.0, "step_seconds": 0.0, "images": 0}, 0
    if saved is not None:
        model.load_state_dict(saved["model_state"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        if saved.get("scaler"):
            scaler.load_state_dict(saved["scaler"])
        if ema is not None:
            ema.load_state_dict(saved["ema"])
        rng = saved["rng"]
        _set_rng_states(rng[processes.rank] if processes.rank < len(rng) else rng[0])
        start_epoch, curve, totals = saved["epoch"], saved["curve"], saved["totals"]
        resume_count = saved["resume_count"] + 1
        if processes.main and progress:
            print(f"resuming {run_dir} after epoch {start_epoch} of {config.epochs}", flush=True)

    network = model
    if processes.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        network = DistributedDataParallel(model, device_ids=[device.index] if on_cuda else None)
    if config.compile:
        network = torch.compile(network)
    if on_cuda:
        torch.cuda.reset_peak_memory_stats(device)

    from tqdm.auto import tqdm

    bar = tqdm(total=config.epochs * steps_per_epoch, initial=start_epoch * steps_per_epoch, unit="step",
               desc="training", disable=not (progress and processes.main), dynamic_ncols=True)
    checked_classes = False
    accuracy = curve[-1]["test_accuracy"] if curve else None
    for epoch in range(start_epoch, config.epochs):
        epoch_start = time.perf_counter()
        network.train()
        train_loader.set_epoch(epoch)
        loss_sum = torch.zeros((), device=device)
        for step, (images, labels) in enumerate(train_loader):
            with autocast(device, precision):
                logits = network(images)
                if not checked_classes:
                    if logits.dim() != 2 or logits.shape[1] != data.num_classes:
                        raise ValueError(f"the model gives {tuple(logits.shape[1:])} outputs per image; "
                                         f"{data.name} needs {data.num_classes} (set num_classes={data.num_classes})")
                    checked_classes = True
                loss = F.cross_entropy(logits, labels, label_smoothing=config.label_smoothing)
            take_step(loss, optimizer, scaler, scheduler)
            if ema is not None:
                ema.update(model)
            loss_sum += loss.detach()
            # Reading the loss makes the CPU wait for the GPU: do it every few steps only.
            if step % 25 == 24 or step == steps_per_epoch - 1:
                _stop_if_not_finite(loss_sum, processes, epoch, step, optimizer)
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}", lr=f"{optimizer.param_groups[0]['lr']:.3g}")
            bar.update()
        if on_cuda:
            torch.cuda.synchronize(device)
        step_seconds = time.perf_counter() - epoch_start
        train_loss = all_reduce_sum(loss_sum, processes).item() / (steps_per_epoch * processes.world_size)

        accuracy = evaluate(ema.module if ema is not None else model, test_loader, precision=precision)
        totals["seconds"] += time.perf_counter() - epoch_start
        totals["step_seconds"] += step_seconds
        totals["images"] += steps_per_epoch * config.batch_size
        curve.append({"epoch": epoch + 1, "seconds": round(totals["seconds"], 3), "test_accuracy": accuracy,
                      "train_loss": train_loss, "lr": optimizer.param_groups[0]["lr"]})
        if processes.main and progress:
            bar.write(f"epoch {epoch + 1}/{config.epochs}: test accuracy {accuracy:.2%}, train loss {train_loss:.3f}")

        if (epoch + 1) % checkpoint_every and epoch + 1 < config.epochs:
            continue  # the same decision in every process: they all take part in the gather below
        rng = _rng_states()
        if processes.world_size > 1:  # each process has its own dropout stream: keep them all
            import torch.distributed as dist

            gathered = [None] * processes.world_size
            dist.all_gather_object(gathered, rng)
            rng = gathered
        else:
            rng = [rng]
        if processes.main and run_dir is not None:
            state = {
                "format": CHECKPOINT_FORMAT, "epoch": epoch + 1, "config": config.to_dict(), "model": description,
                "model_state": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "ema": ema.state_dict() if ema is not None else None,
                "rng": rng, "loader": train_loader.state_dict(), "curve": curve, "totals": totals,
                "resume_count": resume_count,
            }
            save_torch(run_dir / CHECKPOINT_FILE, state)
    bar.close()

    peak, peak_measure = peak_memory(device)
    record = make_record(model, config, data, device, processes, accuracy, curve, totals, resume_count,
                     peak, peak_measure, description, command, precision, channels_last)
    if run_info is not None:
        record["run"] = dict(run_info)
    if processes.main and run_dir is not None:
        write_json(run_dir / RECORD_FILE, record)
    return record


def _stop_if_not_finite(loss_sum, processes, epoch, step, optimizer) -> None:
    # All processes look at the same summed value, so they all stop together.
    total = all_reduce_sum(loss_sum.detach().clone(), processes).item()
    if not math.isfinite(total):
        raise NonFiniteLossError(
            f"the training loss became {total} in epoch {epoch + 1} (by step {step + 1}, learning rate "
            f"{optimizer.param_groups[0]['lr']:.3g}): the run stopped. The checkpoint of the last finished "
            f"epoch is intact. Try a lower learning rate, a longer warm-up or fp32 (--no-amp)."
        )


# --- the command line ------------------------------------------------------------------


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``train`` with ``python -m effnet_lab``'s subcommands."""
    parser = subparsers.add_parser(
        "train", help="train an EfficientNet on CIFAR and write a JSON record",
        description="Train an effnet_lab EfficientNet on CIFAR. Rerun the same command to resume an "
                    "interrupted run; under torchrun it trains data-parallel.",
        argument_default=argparse.SUPPRESS,
    )
    model = parser.add_argument_group("model (default: b0 with the cifar stem; quick mode: width and depth 0.25)")
    model.add_argument("--model", dest="variant", help="b0..b7 or lite0..lite4; 'none' for plain B0 scaled by --width/--depth")
    model.add_argument("--width", type=float, help="width multiplier (overrides the variant's)")
    model.add_argument("--depth", type=float, help="depth multiplier (overrides the variant's)")
    model.add_argument("--stem", choices=["cifar", "imagenet"], help="cifar: stride 8 for 32x32 images")
    model.add_argument("--dropout", type=float, help="dropout before the classifier")
    model.add_argument("--drop-path", dest="drop_path_rate", type=float, help="stochastic depth rate of the last block")

    run = parser.add_argument_group("training (defaults: TrainConfig, or its quick-mode values with --quick)")
    run.add_argument("--quick", action="store_true", help=f"quick mode (also {settings.QUICK_ENV}=1)")
    run.add_argument("--dataset", choices=list(NUM_CLASSES))
    run.add_argument("--data", help=f"folder or .tar.gz with the images (default: ${settings.DATA_ENV} or found)")
    run.add_argument("--epochs", type=int)
    run.add_argument("--batch-size", type=int, help="global batch (split among torchrun processes)")
    run.add_argument("--lr", type=float, help="peak learning rate (default: 0.1 x batch/256 for SGD, 2e-3 for AdamW)")
    run.add_argument("--optimizer", choices=OPTIMIZERS)
    run.add_argument("--momentum", type=float)
    run.add_argument("--no-nesterov", dest="nesterov", action="store_false")
    run.add_argument("--weight-decay", type=float)
    run.add_argument("--schedule", choices=SCHEDULES)
    run.add_argument("--warmup-epochs", type=float)
    run.add_argument("--label-smoothing", type=float)
    run.add_argument("--resolution", type=int, help="input size in pixels (images are resized on the device)")
    run.add_argument("--subset-per-class", type=int, help="training images per class (stratified)")
    run.add_argument("--test-per-class", type=int, help="test images per class (default: the full test set)")
    run.add_argument("--no-augment", dest="augment", action="store_false")
    run.add_argument("--seed", type=int)
    run.add_argument("--ema", action="store_true", help="evaluate an exponential moving average of the weights")
    run.add_argument("--ema-decay", type=float)
    run.add_argument("--no-amp", dest="amp", action="store_false", help="fp32 on a GPU instead of mixed precision")
    run.add_argument("--precision", choices=PRECISIONS, help="auto (default): bf16 where the GPU has it, else fp16")
    run.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    run.add_argument("--compile", action="store_true", help="torch.compile the model (pays off on long GPU runs)")
    run.add_argument("--eval-batch-size", type=int)
    run.add_argument("--device", help="cpu, cuda, cuda:1 (default: the GPU when there is one)")
    run.add_argument("--out", help="run folder for the checkpoint and record.json (default: a folder "
                                   "under the results folder named after the settings)")
    run.add_argument("--no-progress", dest="progress", action="store_false")
    parser.set_defaults(run=main)
    return parser


_MODEL_ARGS = ("variant", "width", "depth", "stem", "dropout", "drop_path_rate")


def main(args: argparse.Namespace) -> int:
    given = vars(args)
    quick = settings.quick_mode(True if given.get("quick") else None)
    spec = dict(QUICK_MODEL if quick else FULL_MODEL)
    if any(name in given for name in ("variant", "width", "depth")):  # a model named: start from its defaults
        spec = {"variant": "b0", "stem": spec["stem"]}
    spec.update({name: given[name] for name in _MODEL_ARGS if name in given})
    if isinstance(spec.get("variant"), str) and spec["variant"].lower() == "none":
        spec["variant"] = None
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)} - {"quick"}
    config = default_config(quick, **{name: value for name, value in given.items() if name in train_fields})
    model = build_model(**spec, num_classes=NUM_CLASSES[config.dataset], seed=config.seed)  # the seed: weights too
    out = Path(given["out"]) if "out" in given else settings.results_dir() / _run_name(spec, config)
    record = train(model, config, run_dir=out, progress=given.get("progress", True), model_spec=spec,
                   command=given.get("command_line"))
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"test accuracy {record['test_accuracy']:.2%} after {record['epochs']} epochs "
              f"({record['train_seconds']:.0f} s, {record['images_per_second']:.0f} images/s on {record['device']})")
        print(f"record: {out / 'record.json'}")
    return 0


def _run_name(spec: dict, config: TrainConfig) -> str:
    """A folder name that the same settings always give: so the same command resumes."""
    settings_hash = hashlib.sha1(json.dumps([spec, config.to_dict()], sort_keys=True, default=str).encode()).hexdigest()[:8]
    model = spec.get("variant") or f"w{spec.get('width', 1.0)}-d{spec.get('depth', 1.0)}"
    return f"{config.dataset}-{model}-{config.resolution}px-{config.epochs}ep-seed{config.seed}-{settings_hash}"
