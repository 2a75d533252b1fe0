"""Train the seeds of one run together, as one grouped network (lesson 05's sweep, ``--packed``).

A run of the scaling comparison is trained with three seeds. On a large GPU the training
step of these small networks is bound by kernel launches, so three seeds trained one after
the other cost three times what one costs. ``train_seeds`` packs the seeds' networks into
one (``effnet_lab.packed``: every kernel does the work of all of them) and trains that:

- each seed keeps what it would have alone: its initial weights (``run.build_model()``),
  its training and test subsets, its data order and augmentation (one ``DeviceLoader`` per
  seed, seeded with its seed); the batches are stacked on the channel axis;
- the loss is the sum of the models' mean losses (``packed_loss``): the models share no
  weight, so each weight gets the gradient it gets alone, and SGD or AdamW, which update
  element by element, move it as they would alone;
- each run gets its own ``record.json``, train's record plus ``"packed": N``. Its
  ``train_seconds`` and curve's ``seconds`` are the group's wall clock (shared by N models),
  its ``images_per_second`` this model's images over that time (the group did N times more).

What differs from training the seeds one by one: dropout and stochastic depth draw their
masks from one random stream for the whole group (the comparison's networks have neither);
with fp16 the gradient scaler is shared, so an overflow in one model skips the step for all
(the comparison trains in fp32); and a packed convolution sums in another order than N
separate ones, which changes the last bits of float32 results.

A group checkpoint (``packed-checkpoint.pt``, in the first run's folder) is written after
every epoch; rerunning resumes from it and ends where an uninterrupted run ends. One process
only (no torchrun).
"""

from __future__ import annotations

import json
import math
import time

import torch
import torch.nn.functional as F

from . import settings
from .checks import check_int
from .data import DeviceLoader, load_cifar
from .distributed import Processes
from .files import save_torch, write_json
from .optim import EMA, autocast, choose_precision, make_optimizer, make_schedule, take_step
from .packed import pack, packed_loss, stack_images, stack_labels, unpack
from .record import RECORD_FILE, describe_model, make_record, peak_memory
from .train import NonFiniteLossError, _rng_states, _set_rng_states, evaluate

PACKED_CHECKPOINT_FILE = "packed-checkpoint.pt"  # in the folder of the group's first run
PACKED_CHECKPOINT_FORMAT = 1


def check_same_run_but_seed(runs) -> None:
    """Raise a ValueError unless ``runs`` are one run (same model, same training) with different seeds."""
    from .experiments import Run

    runs = list(runs)
    if not runs or not all(isinstance(run, Run) for run in runs):
        raise ValueError("train_seeds takes a non-empty list of experiments.Run (from experiments.plan)")
    first, ours = runs[0], _without_seed(runs[0])
    for run in runs[1:]:
        theirs = _without_seed(run)
        changed = sorted(key for key in ours.keys() | theirs.keys() if ours.get(key) != theirs.get(key))
        if run.model_config() != first.model_config() or changed:
            how = f"trains with other settings ({', '.join(changed)})" if changed else "builds another network"
            raise ValueError(f"run {run.run_id} {how} than run {first.run_id}: only runs that differ by "
                             "their seed alone can be trained packed")
    seeds = [run.seed for run in runs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"the runs' seeds repeat ({seeds}): a group trains each seed once")


def seed_groups(runs) -> list[list]:
    """``runs`` grouped into runs that differ only by their seed (same experiment, model, recipe and
    training settings), each group where its first run is in ``runs``."""
    groups: dict[tuple, list] = {}
    for run in runs:
        train = json.dumps({k: v for k, v in run.train.items() if k != "seed"}, sort_keys=True, default=str)
        groups.setdefault((run.experiment, run.spec, run.baseline, run.recipe, train), []).append(run)
    return list(groups.values())


def _without_seed(run) -> dict:
    return {k: v for k, v in run.train_config().to_dict().items() if k != "seed"}


def train_seeds(runs, *, data=None, out=None, progress: bool = True, command: list[str] | None = None,
                checkpoint_every: int = 1) -> list[dict]:
    """Train ``runs`` (one run with several seeds) as one packed network; return their records.

    Each record goes to ``sweep.run_folder(run, out)``. Runs whose record exists are not
    trained again (the others are trained as a smaller group); with all of them done, the
    saved records come back. ``data``: a loaded ``CifarData`` (default: loaded here).
    """
    from .sweep import run_folder

    runs = list(runs)
    check_same_run_but_seed(runs)
    checkpoint_every = check_int("checkpoint_every", checkpoint_every, minimum=1)
    folders = [run_folder(run, out) for run in runs]
    todo = [i for i, folder in enumerate(folders) if not (folder / RECORD_FILE).exists()]
    if todo:
        _train_group([runs[i] for i in todo], [folders[i] for i in todo], data, progress, command, checkpoint_every)
    return [json.loads((folder / RECORD_FILE).read_text()) for folder in folders]


def _train_group(runs, folders, data, progress, command, checkpoint_every) -> None:
    from .sweep import model_spec, run_section

    n, config = len(runs), runs[0].train_config()
    configs = [run.train_config() for run in runs]
    device = torch.device(config.device) if config.device is not None else settings.default_device()
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {config.device!r} is not available here: PyTorch finds no CUDA GPU")
    precision = choose_precision(config, device)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    if data is None:
        data = load_cifar(config.dataset, config.data, progress=progress)
    if data.name != config.dataset:
        raise ValueError(f"config.dataset is {config.dataset!r} but the data given is {data.name!r}")

    # Each seed's own subsets and data order, exactly as effnet_lab.train draws them for one run.
    subsets = [data.subset(c.subset_per_class, c.seed, test_per_class=c.test_per_class) for c in configs]
    loader_args = dict(resolution=config.resolution, device=device, channels_last=config.channels_last)
    train_loaders = [DeviceLoader.from_data(d, "train", config.batch_size, seed=c.seed, augment=config.augment,
                                            **loader_args) for d, c in zip(subsets, configs)]
    test_loaders = [DeviceLoader.from_data(d, "test", config.eval_batch_size, **loader_args) for d in subsets]
    steps_per_epoch = len(train_loaders[0])
    if any(len(loader) != steps_per_epoch for loader in train_loaders):
        raise ValueError("the seeds' training subsets differ in size: they cannot share training steps")

    models = [run.build_model() for run in runs]  # each seed decides its own initial weights
    descriptions = [json.loads(json.dumps(describe_model(m, model_spec(r)), default=str)) for m, r in zip(models, runs)]
    torch.manual_seed(config.seed)  # dropout and stochastic depth: one stream for the group
    packed = pack(models).to(device)
    if config.channels_last:
        packed = packed.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(packed, config)  # weight decay on >1-D tensors: GroupedLinear's bias is 1-D
    scheduler = make_schedule(optimizer, config, steps_per_epoch)
    ema = EMA(packed, config.ema_decay) if config.ema else None

    run_ids = [run.run_id for run in runs]
    start_epoch, curves, resume_count = 0, [[] for _ in runs], 0
    totals = {"seconds": 0.0, "step_seconds": 0.0, "images": 0}
    checkpoint_path = folders[0] / PACKED_CHECKPOINT_FILE
    saved = _load_checkpoint(checkpoint_path, run_ids, progress)
    if saved is not None:
        packed.load_state_dict(saved["packed_state"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        scaler.load_state_dict(saved["scaler"])
        if ema is not None:
            ema.load_state_dict(saved["ema"])
        _set_rng_states(saved["rng"])
        start_epoch, curves, totals = saved["epoch"], saved["curves"], saved["totals"]
        resume_count = saved["resume_count"] + 1
    network = torch.compile(packed) if config.compile else packed
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    from tqdm.auto import tqdm

    bar = tqdm(total=config.epochs * steps_per_epoch, initial=start_epoch * steps_per_epoch, unit="step",
               desc=f"training {n} seeds packed", disable=not progress, dynamic_ncols=True)
    for epoch in range(start_epoch, config.epochs):
        epoch_start = time.perf_counter()
        network.train()
        for loader in train_loaders:
            loader.set_epoch(epoch)
        loss_sums = torch.zeros(n, device=device)  # each model's own loss, summed over the epoch
        for step, batches in enumerate(zip(*train_loaders)):
            images, labels = stack_images([b[0] for b in batches]), stack_labels([b[1] for b in batches])
            with autocast(device, precision):
                logits = network(images)
                loss = packed_loss(logits, labels, label_smoothing=config.label_smoothing)
            take_step(loss, optimizer, scaler, scheduler)
            if ema is not None:
                ema.update(packed)
            with torch.no_grad():
                wide = logits.to(torch.promote_types(logits.dtype, torch.float32))  # as train: not in bf16
                loss_sums += F.cross_entropy(wide.transpose(1, 2), labels, reduction="none",
                                             label_smoothing=config.label_smoothing).mean(0)
            if step % 25 == 24 or step == steps_per_epoch - 1:  # reading the losses waits for the GPU
                _stop_if_not_finite(loss_sums, runs, epoch, step, optimizer)
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item() / n:.3f}", lr=f"{optimizer.param_groups[0]['lr']:.3g}")
            bar.update()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        step_seconds = time.perf_counter() - epoch_start
        accuracies = _evaluate(ema.module if ema is not None else packed, test_loaders, precision)
        totals["seconds"] += time.perf_counter() - epoch_start
        totals["step_seconds"] += step_seconds
        totals["images"] += steps_per_epoch * config.batch_size  # per model
        for curve, accuracy, loss_sum in zip(curves, accuracies, loss_sums.tolist()):
            curve.append({"epoch": epoch + 1, "seconds": round(totals["seconds"], 3), "test_accuracy": accuracy,
                          "train_loss": loss_sum / steps_per_epoch, "lr": optimizer.param_groups[0]["lr"]})
        if progress:
            bar.write(f"epoch {epoch + 1}/{config.epochs}: test accuracy "
                      + ", ".join(f"{a:.2%}" for a in accuracies) + f" (seeds {', '.join(str(c.seed) for c in configs)})")
        if (epoch + 1) % checkpoint_every and epoch + 1 < config.epochs:
            continue
        save_torch(checkpoint_path, {
            "format": PACKED_CHECKPOINT_FORMAT, "runs": run_ids, "epoch": epoch + 1, "config": config.to_dict(),
            "packed_state": packed.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
            "ema": ema.state_dict() if ema is not None else None, "rng": _rng_states(),
            "curves": curves, "totals": totals, "resume_count": resume_count,
        })
    bar.close()

    peak, peak_measure = peak_memory(device)
    for i, model in enumerate(unpack(packed)):
        accuracy = curves[i][-1]["test_accuracy"] if curves[i] else None
        record = make_record(model, configs[i], subsets[i], device, Processes(), accuracy, curves[i], totals,
                             resume_count, peak, peak_measure, descriptions[i], command, precision,
                             config.channels_last)
        record["packed"] = n
        record["run"] = run_section(runs[i])
        write_json(folders[i] / RECORD_FILE, record)


def _load_checkpoint(path, run_ids, progress):
    """The group checkpoint at ``path`` if it is this group's; None (start over) if there is none or
    it holds another group (the seeds asked for changed, or some of its runs have finished)."""
    if not path.exists():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"checkpoint {path} is unreadable ({error}); delete it to start over") from None
    if saved.get("format") != PACKED_CHECKPOINT_FORMAT or saved.get("runs") != run_ids:
        if progress:
            print(f"{path} holds another group of runs: starting this group over", flush=True)
        return None
    if progress:
        print(f"resuming the group in {path.parent} after epoch {saved['epoch']}", flush=True)
    return saved


@torch.no_grad()
def _evaluate(packed, test_loaders, precision) -> list[float]:
    """Each model's top-1 accuracy on its own test subset: one pass when the subsets are the same size."""
    sizes = {len(loader.labels) for loader in test_loaders}
    if len(sizes) > 1:  # different sizes cannot be stacked: each model alone
        return [evaluate(model, loader, precision=precision) for model, loader in zip(unpack(packed), test_loaders)]
    was_training = packed.training
    packed.eval()
    device = test_loaders[0].device
    correct = torch.zeros(len(test_loaders), dtype=torch.int64, device=device)
    with autocast(device, precision):
        for batches in zip(*test_loaders):
            logits = packed(stack_images([b[0] for b in batches]))
            correct += (logits.argmax(-1) == stack_labels([b[1] for b in batches])).sum(0)
    packed.train(was_training)
    seen = max(1, sizes.pop())
    return [c / seen for c in correct.tolist()]


def _stop_if_not_finite(loss_sums, runs, epoch, step, optimizer) -> None:
    bad = [(run, total) for run, total in zip(runs, loss_sums.tolist()) if not math.isfinite(total)]
    if bad:
        error = NonFiniteLossError(
            f"the training loss of seed(s) {', '.join(str(run.seed) for run, _ in bad)} became "
            f"{bad[0][1]} in epoch {epoch + 1} (by step {step + 1}, learning "
            f"rate {optimizer.param_groups[0]['lr']:.3g}): the group stopped. Its checkpoint of the last finished "
            f"epoch is intact. Try a lower learning rate, a longer warm-up or fp32 (--no-amp).")
        error.runs = [run for run, _ in bad]  # which runs of the group diverged: the others can go on without them
        raise error
