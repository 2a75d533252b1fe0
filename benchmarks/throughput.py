"""Training throughput: effnet_lab's EfficientNet-B0 against timm's and torchvision's.

The three networks are the same architecture with the same weights (copied tensor by
tensor, and checked: their outputs agree), the same input, batch and precision. Their
training steps (forward, backward, SGD update) are interleaved in one process, round
after round in rotating order, so that a busy machine slows all three alike; the median
round of each is reported, with the ratios effnet_lab / timm and effnet_lab / torchvision.

Two configurations: ``imagenet`` (224 px, the standard stem) and ``cifar`` (32 px, the cifar
stem: stride 8, patched into timm's and torchvision's models the same way). Tensors are
channels_last, as in ``effnet_lab.train`` (``--no-channels-last`` for NCHW); on CUDA the
steps run under bf16 autocast (``--fp32`` to turn it off) and, with ``--compile``, through
``torch.compile``.

    PYTHONPATH=. python benchmarks/throughput.py --out results/throughput-cpu.json
    PYTHONPATH=. python benchmarks/throughput.py --config cifar --steps 2 --rounds 3   # a minute on a CPU
    PYTHONPATH=. python benchmarks/throughput.py --quick   # checks the script (the numbers mean nothing)
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
from effnet_lab.checks import nonnegative_int, positive_int  # noqa: E402
from effnet_lab.files import write_json  # noqa: E402

# Per configuration: resolution, default batch on the CPU, default batch on a GPU.
CONFIGS = {"imagenet": (224, 8, 128), "cifar": (32, 32, 256)}


def build_models(config: str, num_classes: int) -> dict[str, torch.nn.Module]:
    """The same B0 three times: effnet_lab's, timm's and torchvision's, with identical weights."""
    import timm
    import torchvision

    stem = "cifar" if config == "cifar" else "imagenet"
    ours = effnet_lab.efficientnet(1.0, 1.0, num_classes=num_classes, stem=stem)
    # timm's default B0 has no stochastic depth; give it the same 0.2 as the others.
    theirs_timm = timm.create_model("efficientnet_b0", num_classes=num_classes, drop_path_rate=0.2)
    theirs_tv = torchvision.models.efficientnet_b0(num_classes=num_classes)
    if stem == "cifar":  # remove the same two halvings: the stem and the first 24-channel block
        theirs_timm.conv_stem.stride = (1, 1)
        theirs_timm.blocks[1][0].conv_dw.stride = (1, 1)
        theirs_tv.features[0][0].stride = (1, 1)
        theirs_tv.features[2][0].block[1][0].stride = (1, 1)
    effnet_lab.copy_weights_in_order(ours, theirs_timm)
    effnet_lab.copy_weights_in_order(ours, theirs_tv)
    return {"effnet_lab": ours, "timm": theirs_timm, "torchvision": theirs_tv}


def check_identical(models: dict, resolution: int) -> float:
    """Largest output difference between the three in eval mode (they must compute the same function)."""
    x = torch.randn(2, 3, resolution, resolution)
    with torch.no_grad():
        outputs = [model.eval()(x) for model in models.values()]
    for model in models.values():
        model.train()
    return max((out - outputs[0]).abs().max().item() for out in outputs[1:])


def measure(config: str, args, device: torch.device) -> dict:
    resolution, cpu_batch, gpu_batch = CONFIGS[config]
    batch = args.batch_size or (gpu_batch if device.type == "cuda" else cpu_batch)
    models = build_models(config, num_classes=10 if config == "cifar" else 1000)
    difference = check_identical(models, resolution)
    on_cuda = device.type == "cuda"
    amp = on_cuda and not args.fp32
    channels_last = not args.no_channels_last  # as train() does, on a GPU and on a CPU
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, resolution, resolution, generator=generator).to(device, memory_format=memory_format)
    y = torch.randint(0, 10, (batch,), generator=generator).to(device)
    steps = {}
    for name, model in models.items():
        model = model.to(device, memory_format=memory_format).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
        network = torch.compile(model) if args.compile else model

        def step(network=network, optimizer=optimizer):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss = F.cross_entropy(network(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        steps[name] = step

    def sync():
        if on_cuda:
            torch.cuda.synchronize(device)

    clock = time.process_time if args.timer == "cpu" else time.perf_counter
    for name, step in steps.items():  # warm-up: allocator, cuDNN autotuning, compilation
        for _ in range(args.warmup):
            step()
    sync()
    rounds = {name: [] for name in steps}
    names = list(steps)
    for r in range(args.rounds):
        order = names[r % len(names):] + names[: r % len(names)]  # rotate who goes first
        for name in order:
            sync()
            start = clock()
            for _ in range(args.steps):
                steps[name]()
            sync()
            rounds[name].append(args.steps * batch / (clock() - start))
    median = {name: statistics.median(values) for name, values in rounds.items()}
    result = {
        "config": config, "resolution": resolution, "batch_size": batch, "steps_per_round": args.steps,
        "rounds": args.rounds, "timer": args.timer, "precision": "bf16 autocast" if amp else "fp32",
        "memory_format": "channels_last" if channels_last else "contiguous (NCHW)", "compile": args.compile,
        "max_output_difference": difference, "images_per_second": median, "all_rounds": rounds,
        "ratio_effnet_lab_vs_timm": median["effnet_lab"] / median["timm"],
        "ratio_effnet_lab_vs_torchvision": median["effnet_lab"] / median["torchvision"],
        # Each round measures the three back to back: the median of the per-round ratios is
        # less sensitive to a machine whose speed drifts than the ratio of the medians.
        "paired_ratio_effnet_lab_vs_timm": paired(rounds, "timm"),
        "paired_ratio_effnet_lab_vs_torchvision": paired(rounds, "torchvision"),
    }
    print(f"\n{config}: {resolution} px, batch {batch}, {result['precision']}, {result['memory_format']}"
          f"{', compiled' if args.compile else ''} (outputs agree to {difference:.1e})")
    for name, value in median.items():
        print(f"  {name:>12}: {value:8.1f} images/s  (rounds: {', '.join(f'{v:.1f}' for v in rounds[name])})")
    print(f"  effnet_lab / timm = {result['ratio_effnet_lab_vs_timm']:.3f} "
          f"(paired by round: {result['paired_ratio_effnet_lab_vs_timm']:.3f}), "
          f"effnet_lab / torchvision = {result['ratio_effnet_lab_vs_torchvision']:.3f} "
          f"(paired: {result['paired_ratio_effnet_lab_vs_torchvision']:.3f})")
    return result


def paired(rounds: dict, other: str) -> float:
    return statistics.median(a / b for a, b in zip(rounds["effnet_lab"], rounds[other]))


def provenance(device: torch.device) -> dict:
    import timm
    import torchvision

    return {
        "device": settings.device_name(device), "cpu": settings.cpu_name(),
        "torch": torch.__version__, "torchvision": torchvision.__version__, "timm": timm.__version__,
        "python": platform.python_version(), "effnet_lab": effnet_lab.__version__,
        "git_commit": settings.git_commit(), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python", *sys.argv]),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=["cifar", "imagenet", "both"], default="both")
    parser.add_argument("--batch-size", type=positive_int, help="default: 32 (cifar) / 8 (224 px) on a CPU, 256 / 128 on a GPU")
    parser.add_argument("--steps", type=positive_int, default=None, help="training steps per model per round (default: 2 CPU, 20 GPU)")
    parser.add_argument("--rounds", type=positive_int, default=5)
    parser.add_argument("--warmup", type=nonnegative_int, default=None, help="untimed steps first (default: 2 CPU, 10 GPU)")
    parser.add_argument("--compile", action="store_true", help="torch.compile all three")
    parser.add_argument("--fp32", action="store_true", help="no bf16 autocast on CUDA")
    parser.add_argument("--no-channels-last", action="store_true")
    parser.add_argument("--device", help="default: the GPU when there is one")
    parser.add_argument("--threads", type=positive_int, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--timer", choices=["wall", "cpu"], default="wall",
                        help="cpu: this process's CPU time (with --threads 1, robust on a machine shared with other jobs)")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--quick", action="store_true",
                        help="32 px only, one round of one step at batch 4: checks the script on a CPU (numbers mean nothing)")
    args = parser.parse_args(argv)
    if args.quick:
        args.config, args.rounds, args.steps, args.warmup, args.batch_size = "cifar", 1, 1, 1, 4
    device = torch.device(args.device) if args.device else settings.default_device()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.steps = args.steps or (20 if device.type == "cuda" else 2)
    args.warmup = args.warmup if args.warmup is not None else (10 if device.type == "cuda" else 2)
    if args.timer == "cpu" and device.type == "cuda":
        parser.error("--timer cpu measures the CPU's work: use it on a CPU only")
    torch.manual_seed(0)
    info = provenance(device)
    print(f"{info['device']}, torch {info['torch']}, timm {info['timm']}, torchvision {info['torchvision']}")
    configs = ["cifar", "imagenet"] if args.config == "both" else [args.config]
    results = [measure(config, args, device) for config in configs]
    if args.out:
        out = write_json(args.out, {"benchmark": "throughput", **info, "quick": args.quick, "results": results})
        print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
