"""Training-step speed of lesson 05's small EfficientNets: each lever against the eager step.

Lesson 05 trains many small networks (B0's blocks on the cifar stem, 21 px images), three
seeds each. On a large GPU such a step is bound by kernel launches, so the usual cure (a
bigger network) does not apply. The levers measured here, side by side in one process:

- ``cudnn.benchmark``: cuDNN times its algorithms once per shape and keeps the fastest;
- packed seeds: N networks as one grouped network (``effnet_lab.packed``), N x batch images
  a step;
- CUDA graph: the whole step captured once and replayed (``effnet_lab.fast_step``); on a CPU
  it falls back to the eager step, and the table says so;
- packed + graph, and everything together;
- larger batches (2x and 4x).

Two networks: the comparison's baseline (width 0.5, depth 1.0) and the deepest phi <= 2
network (depth-only at phi = 2: width 0.5, depth 4.0), both at 21 px, built as lesson 05
builds them (``experiments.Baseline``), trained with the comparison recipe's precision and
memory format. Every lever takes its turn, round after round in rotating order; the median
round of each is reported with its ratio to eager (and the median of the per-round ratios,
"paired"). One batch of random images is reused, with the learning rate at 0: every lever
does the same arithmetic on the same weights (see data_pipeline.py on why).

    PYTHONPATH=. python benchmarks/step_speed.py --out step-speed.json      # GPU: a few minutes
    PYTHONPATH=. python benchmarks/step_speed.py --quick                    # 2 CPU cores: < 1 minute
"""

from __future__ import annotations

import argparse
import datetime
import functools
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import effnet_lab  # noqa: E402
from effnet_lab import recipes, settings  # noqa: E402
from effnet_lab.checks import nonnegative_int, positive_int  # noqa: E402
from effnet_lab.experiments import Baseline  # noqa: E402
from effnet_lab.fast_step import TrainingStep, capturable_optimizer  # noqa: E402
from effnet_lab.files import write_json  # noqa: E402
from effnet_lab.model import build  # noqa: E402
from effnet_lab.packed import pack, packed_loss  # noqa: E402

# (width, depth) of the two networks; quick mode shrinks both to stay under a minute on a CPU.
MODELS = {"baseline": (0.5, 1.0), "deepest phi<=2": (0.5, 4.0)}
QUICK_MODELS = {"small": (0.25, 0.5), "small, deeper": (0.25, 1.0)}
# Settings per device: base batch, steps per round, rounds, untimed warm-up steps.
DEFAULTS = {"cuda": dict(batch=256, steps=20, rounds=5, warmup=5), "cpu": dict(batch=8, steps=2, rounds=3, warmup=1),
            "quick": dict(batch=2, steps=1, rounds=2, warmup=0)}
GRAPH_WARMUP = 3  # eager steps on a side stream before the capture (TrainingStep's warmup_steps)


@dataclass(frozen=True)
class Lever:
    name: str
    batch_factor: int = 1  # times the base batch
    n_models: int = 1  # packed seeds
    cuda_graph: bool = False
    cudnn_benchmark: bool = False


LEVERS = (
    Lever("eager"),
    Lever("cudnn.benchmark", cudnn_benchmark=True),
    Lever("packed x3", n_models=3),
    Lever("packed x6", n_models=6),
    Lever("CUDA graph", cuda_graph=True),
    Lever("packed x3 + graph", n_models=3, cuda_graph=True),
    Lever("packed x6 + graph", n_models=6, cuda_graph=True),
    Lever("packed x6 + graph + cudnn.benchmark", n_models=6, cuda_graph=True, cudnn_benchmark=True),
    Lever("batch x2", batch_factor=2),
    Lever("batch x4", batch_factor=4),
)


def make_step(lever: Lever, config, batch: int, resolution: int, device: torch.device, recipe, amp: bool):
    """The lever's training step and its one batch: (step, images, labels)."""
    models = [build(config, seed=seed) for seed in range(lever.n_models)]
    network = pack(models) if lever.n_models > 1 else models[0]
    memory_format = torch.channels_last if recipe.channels_last else torch.contiguous_format
    network = network.to(device, memory_format=memory_format).train()
    if lever.cuda_graph:
        optimizer = capturable_optimizer(network.parameters(), device, lr=0.0, momentum=recipe.momentum,
                                         nesterov=recipe.nesterov, weight_decay=recipe.weight_decay)
    else:  # as effnet_lab.train makes it (one group: the weight-decay split changes nothing here)
        optimizer = torch.optim.SGD(network.parameters(), lr=0.0, momentum=recipe.momentum,
                                    nesterov=recipe.nesterov and recipe.momentum > 0, weight_decay=recipe.weight_decay)
    loss = packed_loss if lever.n_models > 1 else F.cross_entropy
    loss = functools.partial(loss, label_smoothing=recipe.label_smoothing)
    step = TrainingStep(network, optimizer, loss, cuda_graph=lever.cuda_graph, warmup_steps=GRAPH_WARMUP,
                        autocast_dtype=torch.bfloat16 if amp else None)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3 * lever.n_models, resolution, resolution, generator=generator)
    labels = torch.randint(0, config.num_classes, (batch, lever.n_models) if lever.n_models > 1 else (batch,),
                           generator=generator)
    return step, images.to(device, memory_format=memory_format), labels.to(device)


def measure(model_name: str, width: float, depth: float, levers, plan: dict, device, recipe, amp,
            timer: str = "wall") -> dict:
    baseline = Baseline()
    resolution = baseline.resolution
    config = baseline.config(width, depth, resolution)
    on_cuda = device.type == "cuda"

    def sync():
        if on_cuda:
            torch.cuda.synchronize(device)

    clock = time.process_time if timer == "cpu" else time.perf_counter
    prepared, skipped = {}, {}
    for lever in levers:
        batch = plan["batch"] * lever.batch_factor
        torch.backends.cudnn.benchmark = lever.cudnn_benchmark
        try:
            step, images, labels = make_step(lever, config, batch, resolution, device, recipe, amp)
            capture = lever.cuda_graph and on_cuda  # the graph is captured after GRAPH_WARMUP eager steps
            for _ in range(max(plan["warmup"], GRAPH_WARMUP + 1) if capture else plan["warmup"]):
                step(images, labels)
            sync()
        except torch.cuda.OutOfMemoryError:
            skipped[lever.name] = "out of memory"
            torch.cuda.empty_cache()
            continue
        prepared[lever.name] = (lever, step, images, labels, batch * lever.n_models)

    rounds = {name: [] for name in prepared}
    names = list(prepared)
    for r in range(plan["rounds"]):
        for name in names[r % len(names):] + names[: r % len(names)]:  # rotate who goes first
            lever, step, images, labels, images_per_step = prepared[name]
            torch.backends.cudnn.benchmark = lever.cudnn_benchmark
            sync()
            start = clock()
            for _ in range(plan["steps"]):
                step(images, labels)
            sync()
            rounds[name].append(plan["steps"] * images_per_step / (clock() - start))
    torch.backends.cudnn.benchmark = False

    eager = statistics.median(rounds["eager"])
    rows = []
    for name, (lever, step, _, _, images_per_step) in prepared.items():
        notes = []
        if lever.cuda_graph and step.mode != "cuda graph":
            notes.append(f"eager fallback: {step.fallback_reason}")
        if lever.cudnn_benchmark and not on_cuda:
            notes.append("cudnn.benchmark: no effect on a CPU")
        median = statistics.median(rounds[name])
        fused = " (fused, lr on the device)" if lever.cuda_graph and on_cuda else ""
        rows.append({**asdict(lever), "batch_size": images_per_step // lever.n_models,
                     "images_per_step": images_per_step,
                     "step_mode": step.mode, "optimizer": type(step.optimizer).__name__ + fused,
                     "images_per_second": median, "ratio_to_eager": median / eager,
                     "paired_ratio_to_eager": statistics.median(a / b for a, b in zip(rounds[name], rounds["eager"])),
                     "all_rounds": rounds[name], "note": "; ".join(notes)})
    print(f"\n{model_name}: width {width}, depth {depth}, {resolution} px, {config.num_classes} classes")
    print(f"  {'lever':<38}{'images/step':>12}{'images/s':>11}{'x eager':>9}{'(paired)':>10}")
    for row in rows:
        print(f"  {row['name']:<38}{row['images_per_step']:>12}{row['images_per_second']:>11.1f}"
              f"{row['ratio_to_eager']:>9.2f}{row['paired_ratio_to_eager']:>10.2f}  {row['note']}")
    for name, why in skipped.items():
        print(f"  {name:<38} skipped: {why}")
    return {"model": model_name, "width": width, "depth": depth, "resolution": resolution,
            "levers": rows, "skipped": skipped}


def provenance(device: torch.device) -> dict:
    return {"device": settings.device_name(device), "cpu": settings.cpu_name(), "torch": torch.__version__,
            "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
            "python": platform.python_version(), "effnet_lab": effnet_lab.__version__,
            "git_commit": settings.git_commit(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(["python", *sys.argv])}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small networks, few steps: every lever in under a minute on a CPU")
    parser.add_argument("--model", choices=["baseline", "deepest", "both"], default="both")
    parser.add_argument("--batch-size", type=positive_int, help="the base batch (default: 256 on a GPU, 8 on a CPU)")
    parser.add_argument("--steps", type=positive_int, help="steps per lever per round (default: 20 GPU, 2 CPU)")
    parser.add_argument("--rounds", type=positive_int, help="default: 5 GPU, 3 CPU")
    parser.add_argument("--warmup", type=nonnegative_int, help="untimed steps first (default: 5 GPU, 1 CPU)")
    parser.add_argument("--bf16", action="store_true",
                        help="bf16 autocast on CUDA (the comparison recipe trains in fp32)")
    parser.add_argument("--device", help="default: the GPU when there is one")
    parser.add_argument("--threads", type=positive_int, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--timer", choices=["wall", "cpu"], default="wall",
                        help="cpu: this process's CPU time (with --threads 1, robust on a shared machine)")
    parser.add_argument("--out", help="write the table as JSON here")
    args = parser.parse_args(argv)
    device = torch.device(args.device) if args.device else settings.default_device()
    if args.timer == "cpu" and device.type == "cuda":
        parser.error("--timer cpu measures the CPU's work: use it on a CPU only")
    if args.threads:
        torch.set_num_threads(args.threads)
    elif args.quick and device.type == "cpu":
        # Networks this small run faster on one thread than on two that wait for each other.
        torch.set_num_threads(1)
    chosen = dict(DEFAULTS["quick" if args.quick else device.type if device.type == "cuda" else "cpu"])
    chosen.update({key: value for key, value in dict(batch=args.batch_size, steps=args.steps, rounds=args.rounds,
                                                     warmup=args.warmup).items() if value is not None})
    recipe = recipes.config("comparison", quick=False)
    amp = device.type == "cuda" and (args.bf16 or recipe.amp)
    models = list((QUICK_MODELS if args.quick else MODELS).items())
    models = models if args.model == "both" else models[:1] if args.model == "baseline" else models[1:]
    info = provenance(device)
    print(f"{info['device']}, torch {info['torch']}, {'bf16 autocast' if amp else 'fp32'}, "
          f"{'channels_last' if recipe.channels_last else 'NCHW'}, base batch {chosen['batch']}, "
          f"{chosen['steps']} steps x {chosen['rounds']} rounds, {args.timer} clock{' (quick)' if args.quick else ''}")
    results = [measure(name, width, depth, LEVERS, chosen, device, recipe, amp, args.timer)
               for name, (width, depth) in models]
    if args.out:
        out = write_json(args.out, {"benchmark": "step_speed", **info, "quick": args.quick,
                                    "base_batch_size": chosen["batch"], "steps_per_round": chosen["steps"],
                                    "rounds": chosen["rounds"], "warmup_steps": chosen["warmup"], "timer": args.timer,
                                    "precision": "bf16 autocast" if amp else "fp32",
                                    "memory_format": "channels_last" if recipe.channels_last else "contiguous (NCHW)",
                                    "learning_rate": 0.0, "results": results})
        print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
