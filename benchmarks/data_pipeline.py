"""What does feeding the network cost? An epoch with real loading against one pre-made batch.

Two ways to run the same number of training steps of the quick-mode model:

- ``real``: each step gets its batch from ``DeviceLoader``: index the uint8 images held on
  the device, random crop, flip, normalise, resize, memory format (what ``train`` does);
- ``premade``: each step reuses one batch made beforehand (no loading at all).

The two alternate, round after round, and the overhead is median(real) / median(premade) - 1.
The loader alone (batches made, no training) is timed too. Without CIFAR at hand
(``EFFNET_LAB_DATA`` unset and nothing found), random images of the same shape stand in:
the loader's cost does not depend on the pixel values.

    PYTHONPATH=. python benchmarks/data_pipeline.py --out results/data-pipeline-cpu.json
    PYTHONPATH=. python benchmarks/data_pipeline.py --steps 10 --rounds 3   # a minute on a CPU
    PYTHONPATH=. python benchmarks/data_pipeline.py --quick   # checks the script (the numbers mean nothing)
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import effnet_lab  # noqa: E402
from effnet_lab import settings  # noqa: E402
from effnet_lab.checks import positive_float, positive_int  # noqa: E402
from effnet_lab.files import write_json  # noqa: E402
from effnet_lab.data import CifarData, DeviceLoader, load_cifar  # noqa: E402
from effnet_lab.recipes import RECIPES  # noqa: E402
from effnet_lab.train import QUICK_MODEL, build_model  # noqa: E402

QUICK_TRAIN = RECIPES["train"].quick


def get_data(per_class: int) -> CifarData:
    try:
        data = load_cifar("cifar10", progress=False, download=False)
    except FileNotFoundError:
        generator = torch.Generator().manual_seed(0)
        images = lambda n: torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator)  # noqa: E731
        data = CifarData("cifar10", images(50_000), torch.arange(50_000) % 10, images(10_000),
                         torch.arange(10_000) % 10, [str(i) for i in range(10)], source="synthetic random images")
    return data.subset(per_class, seed=0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=positive_int, default=QUICK_TRAIN["batch_size"])
    parser.add_argument("--resolution", type=positive_int, default=QUICK_TRAIN["resolution"])
    parser.add_argument("--per-class", type=positive_int, default=QUICK_TRAIN["subset_per_class"],
                        help="training images per class (the epoch)")
    parser.add_argument("--steps", type=positive_int, help="steps per round (default: one epoch of the subset)")
    parser.add_argument("--rounds", type=positive_int, default=5)
    parser.add_argument("--width", type=positive_float, default=QUICK_MODEL["width"])
    parser.add_argument("--depth", type=positive_float, default=QUICK_MODEL["depth"])
    parser.add_argument("--device", help="default: the GPU when there is one")
    parser.add_argument("--threads", type=positive_int, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--timer", choices=["wall", "cpu"], default="wall",
                        help="cpu: this process's CPU time (with --threads 1, robust on a machine shared with other jobs)")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--quick", action="store_true",
                        help="the quick-mode model and subset, one round of 3 steps: checks the script (numbers mean nothing)")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_size, args.resolution, args.per_class = (QUICK_TRAIN[k] for k in ("batch_size", "resolution",
                                                                                     "subset_per_class"))
        args.width, args.depth, args.steps, args.rounds = QUICK_MODEL["width"], QUICK_MODEL["depth"], 3, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else settings.default_device()
    if args.timer == "cpu" and device.type == "cuda":
        parser.error("--timer cpu measures the CPU's work: use it on a CPU only")
    on_cuda = device.type == "cuda"
    torch.manual_seed(0)

    data = get_data(args.per_class)
    loader = DeviceLoader.from_data(data, "train", args.batch_size, resolution=args.resolution, device=device,
                                    channels_last=True)
    steps = min(args.steps or len(loader), len(loader))
    spec = dict(QUICK_MODEL, width=args.width, depth=args.depth)
    model = build_model(**spec).to(device)
    if on_cuda:
        model = model.to(memory_format=torch.channels_last)
    # Learning rate 0: the same arithmetic in both modes on the same weights. With learning,
    # the network memorises the one pre-made batch and its gradients shrink (denormal
    # numbers are slow on CPUs): on the CPU here, pre-made epochs then ran 2-4% slower
    # than real ones, which hides the loader's cost.
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9, nesterov=True)

    def step(images, labels):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=on_cuda):
            loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def sync():
        if on_cuda:
            torch.cuda.synchronize(device)

    clock = time.process_time if args.timer == "cpu" else time.perf_counter

    def real() -> float:
        sync()
        start = clock()
        for i, (images, labels) in enumerate(loader):
            if i == steps:
                break
            step(images, labels)
        sync()
        return clock() - start

    premade_batch = next(iter(loader))

    def premade() -> float:
        sync()
        start = clock()
        for _ in range(steps):
            step(*premade_batch)
        sync()
        return clock() - start

    def loader_only() -> float:
        sync()
        start = clock()
        for i, (images, labels) in enumerate(loader):
            if i == steps:
                break
        sync()
        return clock() - start

    for _ in range(2 if on_cuda else 1):  # warm-up
        step(*premade_batch)
    times = {"real": [], "premade": [], "loader_only": []}
    for r in range(args.rounds):
        order = ["real", "premade"] if r % 2 == 0 else ["premade", "real"]
        for name in order:
            times[name].append({"real": real, "premade": premade}[name]())
        times["loader_only"].append(loader_only())
    median = {name: statistics.median(values) for name, values in times.items()}
    overhead = median["real"] / median["premade"] - 1
    # Real and premade epochs of one round run back to back: their ratio, per round, is less
    # sensitive to a machine whose speed drifts.
    paired = statistics.median(r / p for r, p in zip(times["real"], times["premade"])) - 1

    info = {
        "benchmark": "data_pipeline", "device": settings.device_name(device), "cpu": settings.cpu_name(), "torch": torch.__version__,
        "python": platform.python_version(), "effnet_lab": effnet_lab.__version__, "git_commit": settings.git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python", *sys.argv]), "data": data.source, "model": spec,
        "batch_size": args.batch_size, "resolution": args.resolution, "steps_per_round": steps,
        "rounds": args.rounds, "quick": args.quick, "timer": args.timer, "precision": "bf16 autocast" if on_cuda else "fp32",
        "seconds": times, "median_seconds": median, "overhead": overhead, "paired_overhead": paired,
        "loader_share_of_premade_epoch": median["loader_only"] / median["premade"],
    }
    print(f"{info['device']}, torch {info['torch']}, data: {data.source}")
    print(f"model (width {args.width}, depth {args.depth}), {args.resolution} px, batch {args.batch_size}, "
          f"{steps} steps per round, {args.rounds} rounds")
    print(f"  real loading + augmentation: {median['real']:.3f} s per epoch (median)")
    print(f"  one pre-made batch:          {median['premade']:.3f} s")
    print(f"  the loader alone:            {median['loader_only']:.4f} s ({1000 * median['loader_only'] / steps:.2f} ms per batch)")
    print(f"  overhead of real loading:    {overhead:+.1%} of the epoch (paired by round: {paired:+.1%}; "
          f"the loader alone: {info['loader_share_of_premade_epoch']:.1%})")
    if args.out:
        out = write_json(args.out, info)
        print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
