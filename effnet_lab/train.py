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

Command line: ``python -m effnet_lab train --model b0 --epochs 30 --out runs/b0`` (see
``python -m effnet_lab train --help``); ``--quick`` for a run of seconds on a CPU.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import hashlib
import json
import math
import os
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import settings
from .checks import check_choice, check_int, check_number
from .data import NUM_CLASSES, CifarData, DeviceLoader, load_cifar
from .files import save_torch, write_json

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "onecycle")
CHECKPOINT_FORMAT = 1
CHECKPOINT_FILE, RECORD_FILE = "checkpoint.pt", "record.json"  # in a run folder


def run_folder_state(run_dir: str | os.PathLike) -> str:
    """What ``train`` does with ``run_dir``: "finished" (its record, written after the last
    epoch, is given back at once; the checkpoint need not be there), "started" (training
    resumes from the checkpoint) or "new"."""
    run_dir = Path(run_dir)
    if (run_dir / RECORD_FILE).exists():
        return "finished"
    return "started" if (run_dir / CHECKPOINT_FILE).exists() else "new"


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite: the run cannot recover, so it stops."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run's result (the model aside)."""

    dataset: str = "cifar10"
    data: str | None = None  # a source for load_cifar; None: EFFNET_LAB_DATA or found automatically
    epochs: int = 30
    batch_size: int = 256
    lr: float | None = None  # None: 0.1 x batch/256 for SGD, 2e-3 for AdamW
    optimizer: str = "sgd"
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float | None = None  # None: 5e-4 for SGD, 0.05 for AdamW
    schedule: str = "cosine"
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    resolution: int = 32
    subset_per_class: int | None = None  # training images per class; None: all
    test_per_class: int | None = None  # test images per class; None: the full test set
    augment: bool = True
    seed: int = 0
    ema: bool = False
    ema_decay: float = 0.999
    amp: bool = True  # bf16 autocast (CUDA only)
    channels_last: bool = True
    compile: bool = False
    eval_batch_size: int = 1024
    device: str | None = None  # None: the GPU when there is one
    quick: bool = False  # a quick-mode run: a label for the record

    def __post_init__(self) -> None:
        put = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)
        check_choice("dataset", self.dataset, NUM_CLASSES)
        put("epochs", check_int("epochs", self.epochs, minimum=1))
        put("batch_size", check_int("batch_size", self.batch_size, minimum=1))
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        if self.lr is None:
            put("lr", 0.1 * self.batch_size / 256 if self.optimizer == "sgd" else 2e-3)
        put("lr", check_number("lr", self.lr, exclusive_minimum=0.0))
        if self.weight_decay is None:
            put("weight_decay", 5e-4 if self.optimizer == "sgd" else 0.05)
        put("weight_decay", check_number("weight_decay", self.weight_decay, minimum=0.0))
        put("momentum", _below_one("momentum", self.momentum))
        put("warmup_epochs", check_number("warmup_epochs", self.warmup_epochs, minimum=0.0))
        if self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) cannot exceed epochs ({self.epochs})")
        put("label_smoothing", _below_one("label_smoothing", self.label_smoothing))
        put("resolution", check_int("resolution", self.resolution, minimum=1))
        for name in ("subset_per_class", "test_per_class"):
            if getattr(self, name) is not None:
                put(name, check_int(name, getattr(self, name), minimum=1))
        put("seed", check_int("seed", self.seed, minimum=0))
        put("ema_decay", _below_one("ema_decay", self.ema_decay))
        put("eval_batch_size", check_int("eval_batch_size", self.eval_batch_size, minimum=1))
        for name in ("nesterov", "augment", "ema", "amp", "channels_last", "compile", "quick"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.data is not None:
            put("data", os.fspath(self.data))
        if self.device is not None:
            try:
                torch.device(self.device)
            except (RuntimeError, TypeError):
                raise ValueError(f"device {self.device!r} is not a device PyTorch knows (try 'cpu' or 'cuda')") from None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _below_one(name: str, value: object) -> float:
    number = check_number(name, value, minimum=0.0)
    if number >= 1.0:
        raise ValueError(f"{name} must be below 1, got {number}")
    return number


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


def describe_model(model: nn.Module, spec: dict | None = None) -> dict:
    """What the record says about the model: the spec it was built from, and its configuration."""
    description = {"class": type(model).__name__}
    if spec:
        description["spec"] = dict(spec)
    config = getattr(model, "config", None)
    if dataclasses.is_dataclass(config):
        description["config"] = dataclasses.asdict(config)
    return description


# --- distributed training ----------------------------------------------------------------


@dataclass
class _Processes:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    started_here: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def _start_processes(device_hint: str | None) -> _Processes:
    """Join the process group that torchrun describes in the environment (if any)."""
    import torch.distributed as dist

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return _Processes()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_initialized():
        return _Processes(rank, world_size, local_rank, started_here=False)
    use_cuda = torch.cuda.is_available() and (device_hint is None or device_hint.startswith("cuda"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return _Processes(rank, world_size, local_rank, started_here=True)


def _all_reduce_sum(value: torch.Tensor, processes: _Processes) -> torch.Tensor:
    if processes.world_size > 1:
        import torch.distributed as dist

        dist.all_reduce(value)
    return value


def _barrier(processes: _Processes) -> None:
    if processes.world_size > 1:
        import torch.distributed as dist

        dist.barrier()


# --- the pieces of a run ---------------------------------------------------------------


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    # Weight decay only on weight matrices and kernels: decaying batch-norm scales and shifts
    # and biases (the 1-D parameters) does not reduce capacity, it only adds noise.
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov and config.momentum > 0)
    return torch.optim.AdamW(groups, lr=config.lr)


class WarmupCosine:
    """The learning-rate factor at step t: linear warm-up from ~0 to 1, then a cosine to 0."""

    def __init__(self, warmup_steps: int, total_steps: int) -> None:
        self.warmup_steps, self.total_steps = warmup_steps, total_steps

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def make_schedule(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int):
    total = config.epochs * steps_per_epoch
    warmup = round(config.warmup_epochs * steps_per_epoch)
    if config.schedule == "onecycle":
        # Smith's one-cycle: up to lr over the warm-up (30% of the run if none is given), then
        # annealed far below it; momentum cycles the other way.
        start = warmup / total if warmup else 0.3
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=total,
                                                   pct_start=min(max(start, 1 / total), 0.99))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(warmup, total))


class EMA(nn.Module):
    """An exponential moving average of a model's weights and batch-norm statistics.

    After each step: ``average <- d * average + (1 - d) * current``. The decay ramps up,
    ``d = min(decay, (1 + n) / (10 + n))`` after n updates: in a short run a fixed 0.999
    would keep the random initial weights in the average for most of it.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        super().__init__()
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.updates = decay, 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        ours = list(self.module.state_dict().values())
        theirs = list(model.state_dict().values())
        floats = [(a, b) for a, b in zip(ours, theirs) if a.is_floating_point()]
        # One fused kernel per list instead of one per tensor; no reads back to the CPU.
        torch._foreach_lerp_([a for a, _ in floats], [b for _, b in floats], 1.0 - d)
        for a, b in zip(ours, theirs):
            if not a.is_floating_point():  # batch-norm step counters: copied
                a.copy_(b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)

    def get_extra_state(self) -> dict:
        return {"updates": self.updates}

    def set_extra_state(self, state: dict) -> None:
        self.updates = int(state["updates"])


@torch.no_grad()
def evaluate(model: nn.Module, loader: DeviceLoader, *, amp: bool = False) -> float:
    """Top-1 accuracy of ``model`` on every image of ``loader`` (summed over all processes under DDP)."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=loader.device)
    seen = torch.zeros((), dtype=torch.int64, device=loader.device)
    with torch.autocast(loader.device.type, dtype=torch.bfloat16, enabled=amp):
        for images, labels in loader:
            correct += (model(images).argmax(1) == labels).sum()
            seen += len(labels)
    model.train(was_training)
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(correct)
        dist.all_reduce(seen)
    return correct.item() / max(1, seen.item())


def _peak_memory(device: torch.device) -> tuple[int, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "torch.cuda.max_memory_allocated"
    # Linux reports kilobytes, macOS bytes.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak * (1 if sys.platform == "darwin" else 1024), "process peak resident memory (ru_maxrss)"


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

    processes = _start_processes(config.device)
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
    amp = config.amp and on_cuda
    channels_last = config.channels_last

    # The data: the first process decodes (and caches) it, the others then read the cache.
    if data is None:
        if not processes.main:
            _barrier(processes)
        data = load_cifar(config.dataset, config.data, progress=progress and processes.main)
        if processes.main:
            _barrier(processes)
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
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = network(images)
                if not checked_classes:
                    if logits.dim() != 2 or logits.shape[1] != data.num_classes:
                        raise ValueError(f"the model gives {tuple(logits.shape[1:])} outputs per image; "
                                         f"{data.name} needs {data.num_classes} (set num_classes={data.num_classes})")
                    checked_classes = True
                loss = F.cross_entropy(logits, labels, label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
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
        train_loss = _all_reduce_sum(loss_sum, processes).item() / (steps_per_epoch * processes.world_size)

        accuracy = evaluate(ema.module if ema is not None else model, test_loader, amp=amp)
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
                "scheduler": scheduler.state_dict(), "ema": ema.state_dict() if ema is not None else None,
                "rng": rng, "loader": train_loader.state_dict(), "curve": curve, "totals": totals,
                "resume_count": resume_count,
            }
            save_torch(run_dir / CHECKPOINT_FILE, state)
    bar.close()

    peak, peak_measure = _peak_memory(device)
    record = _record(model, config, data, device, processes, accuracy, curve, totals, resume_count,
                     peak, peak_measure, description, command, amp, channels_last)
    if run_info is not None:
        record["run"] = dict(run_info)
    if processes.main and run_dir is not None:
        write_json(run_dir / RECORD_FILE, record)
    return record


def _stop_if_not_finite(loss_sum, processes, epoch, step, optimizer) -> None:
    # All processes look at the same summed value, so they all stop together.
    total = _all_reduce_sum(loss_sum.detach().clone(), processes).item()
    if not math.isfinite(total):
        raise NonFiniteLossError(
            f"the training loss became {total} in epoch {epoch + 1} (by step {step + 1}, learning rate "
            f"{optimizer.param_groups[0]['lr']:.3g}): the run stopped. The checkpoint of the last finished "
            f"epoch is intact. Try a lower learning rate, a longer warm-up or fp32 (amp=False)."
        )


def _record(model, config, data, device, processes, accuracy, curve, totals, resume_count,
            peak, peak_measure, description, command, amp, channels_last) -> dict:
    from . import __version__
    from .profile import count_macs, count_params

    try:  # counted on a meta-device copy: the real weights stay where they are
        macs = count_macs(model, config.resolution)
    except Exception:  # an exotic module the flop counter cannot trace
        macs = None
    test_set = (f"stratified subset: {config.test_per_class} per class ({len(data.test_labels)} images)"
                if config.test_per_class else f"full test set ({len(data.test_labels)} images)")
    return {
        "status": "complete",
        "test_accuracy": accuracy,
        "test_set": test_set,
        "train_seconds": round(totals["seconds"], 3),
        "images_per_second": totals["images"] / totals["step_seconds"] if totals["step_seconds"] else None,
        "peak_memory_bytes": peak,
        "peak_memory_measure": peak_measure,
        "device": settings.device_name(device) + (f" x {processes.world_size} processes" if processes.world_size > 1 else ""),
        "world_size": processes.world_size,
        "params": count_params(model),
        "macs": macs,
        "resolution": config.resolution,
        "epochs": config.epochs,
        "seed": config.seed,
        "dataset": config.dataset,
        "data_source": data.source,
        "train_images": len(data.train_labels),
        "test_images": len(data.test_labels),
        "precision": "bf16 autocast" if amp else "fp32",
        "memory_format": "channels_last" if channels_last else "contiguous (NCHW)",
        "git_commit": settings.git_commit(),
        "effnet_lab_version": __version__,
        "torch_version": torch.__version__,
        "resumed": resume_count > 0,
        "resume_count": resume_count,
        "quick_mode": config.quick,
        "accuracy_curve": curve,
        "config": config.to_dict(),
        "model": description,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
    }


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
    run.add_argument("--no-amp", dest="amp", action="store_false", help="fp32 on CUDA instead of bf16 autocast")
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
