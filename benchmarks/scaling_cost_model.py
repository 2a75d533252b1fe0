"""The scaling sweep's cost model: how long a training step takes as the models grow.

    PYTHONPATH=. python benchmarks/scaling_cost_model.py --quick            # the quick sweep's models (CPU)
    PYTHONPATH=. python benchmarks/scaling_cost_model.py --batch-size 32    # full-scale models, small batches (CPU)
    PYTHONPATH=. python benchmarks/scaling_cost_model.py --processes 1 4    # on a GPU: 1 and 4 processes side by side
    PYTHONPATH=. python benchmarks/scaling_cost_model.py --from-runs results/scaling-quick/compare

For every model of the comparison (baseline; width, depth, resolution and compound at
phi = 1, 2, 3), it times training steps (forward, backward and the update, with the run's optimizer, memory
format and precision, as the trainer sets them up) on random images of the run's size, the models
taking turns so that a busy machine slows them all alike, and prints the time per step
relative to the baseline's next to the MACs relative to the baseline's. Then it fits

    seconds per step = batch x GMACs / R  +  o

(R: GMAC-images per second; o: the fixed cost of a step) and predicts the full sweep's time
with the fitted numbers. ``--processes`` also measures the total images per second of several
processes training side by side (``python -m effnet_lab sweep --shard i/n`` runs them so).
``--json FILE`` saves everything. ``--from-runs FOLDER`` fits the same model to whole runs
instead: the training seconds that a sweep's records hold, against each run's arithmetic and
fixed costs as ``effnet_lab.timing.CostModel`` counts them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from effnet_lab import experiments, settings  # noqa: E402
from effnet_lab.checks import positive_float, positive_int  # noqa: E402
from effnet_lab.model import build  # noqa: E402
from effnet_lab.optim import make_optimizer  # noqa: E402


def step_timer(run, batch_size: int, device: torch.device):
    """A function that does one training step of ``run``'s model, set up as the trainer sets it up
    (the run's optimizer, memory format and precision), and returns its seconds."""
    config = run.train_config()
    model = build(run.model_config()).to(device)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = make_optimizer(model, config)
    on_cuda = device.type == "cuda"
    resolution = run.spec.resolution
    x = torch.randn(batch_size, 3, resolution, resolution, device=device).contiguous(memory_format=memory_format)
    y = torch.randint(0, 10, (batch_size,), device=device)

    def step() -> float:
        if on_cuda:
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=on_cuda and config.amp):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if on_cuda:
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    return step


def least_squares(features: list[list[float]], seconds: list[float]) -> list[float]:
    """Coefficients c >= 0 with features @ c closest to seconds: a coefficient the data cannot
    support (below zero) is set to zero and the rest fitted again."""
    features = torch.tensor(features, dtype=torch.float64)
    seconds = torch.tensor(seconds, dtype=torch.float64).unsqueeze(1)
    keep = list(range(features.shape[1]))
    while True:
        coefficients = dict(zip(keep, torch.linalg.lstsq(features[:, keep], seconds).solution.flatten().tolist()))
        negative = [k for k, v in coefficients.items() if v < 0]
        if not negative:
            return [coefficients.get(k, 0.0) for k in range(features.shape[1])]
        keep.remove(negative[0])


def fit(rows: list[dict], batch_size: int) -> tuple[float, float, float]:
    """Least squares of seconds per step = batch x GMACs / R + blocks x b + o over the models.

    Returns (R, b, o); a coefficient the data cannot support (below zero) is set to zero."""
    per_gmac, per_block, per_step = least_squares([[batch_size * r["mmacs"] / 1000, r["blocks"], 1.0] for r in rows],
                                                  [r["ms_per_step"] / 1000 for r in rows])
    return (1 / per_gmac if per_gmac > 0 else float("inf")), per_block, per_step


def fit_runs(folder) -> dict:
    """Fit R, b and the per-run seconds s to the finished runs in ``folder`` (their recorded
    training seconds); o is left at zero, as the step-time fits put it."""
    from effnet_lab import results

    known = {run.run_id: run for name in experiments.EXPERIMENTS for quick in (True, False)
             for run in experiments.plan(name, quick=quick)}
    unit = experiments.CostModel("features", gmac_images_per_second=1.0, seconds_per_block=1.0,
                                 seconds_per_step=0.0, seconds_per_run=0.0)
    rows = [(known[r["run_id"]], r) for r in results.read_runs(folder) if r["run_id"] in known]
    if not rows:
        raise SystemExit(f"no finished run of this version's experiments in {folder}")
    per_gmac, per_block, per_run = least_squares([[*unit.parts(run), 1.0] for run, _ in rows],
                                                 [r["train_seconds"] for _, r in rows])
    fitted = experiments.CostModel("fitted", 1 / per_gmac, per_block, 0.0, per_run)
    print(f"{'run':<20} {'seconds':>8} {'fitted':>8}")
    for run, record in rows:
        print(f"{run.spec.label:<20} {record['train_seconds']:>8.1f} {fitted.run_seconds(run):>8.1f}")
    print(f"fit over {len(rows)} runs: R = {fitted.gmac_images_per_second:.3g} GMAC-images/s, "
          f"b = {per_block * 1000:.2f} ms per block and step, s = {per_run:.1f} s per run")
    return {"runs": str(folder), "fit": {"gmac_images_per_second": fitted.gmac_images_per_second,
                                         "seconds_per_block": per_block, "seconds_per_run": per_run},
            "rows": [{"label": run.spec.label, "seconds": r["train_seconds"], "fitted": fitted.run_seconds(run)}
                     for run, r in rows]}


def measure(runs, batch_size: int, steps: int, repeats: int, device: torch.device) -> list[dict]:
    timers = [(run, step_timer(run, batch_size, device)) for run in runs]
    for _, step in timers:  # warm-up: first calls pay for allocations and kernel selection
        step()
        step()
    times = {run.run_id: [] for run, _ in timers}
    for _ in range(repeats):
        for run, step in timers:  # taking turns: a slower moment of the machine hits every model
            times[run.run_id].append(statistics.median(step() for _ in range(steps)))
    base = runs[0]
    base_seconds = statistics.median(times[base.run_id])
    rows = []
    for run in runs:
        seconds = statistics.median(times[run.run_id])
        rows.append({"label": run.spec.label, "family": run.spec.family, "phi": run.spec.phi,
                     "blocks": sum(stage.repeats for stage in run.model_config().scaled_stages()),
                     "width": run.spec.width, "depth": run.spec.depth, "resolution": run.spec.resolution,
                     "mmacs": run.macs / 1e6, "macs_factor": run.macs / base.macs,
                     "ms_per_step": 1000 * seconds, "time_factor": seconds / base_seconds,
                     "images_per_second": batch_size / seconds})
    return rows


def worker(args) -> None:
    """One of several processes side by side: train one model for a fixed time, print images/s."""
    runs = experiments.plan("compare", quick=args.quick, seeds=[0])
    run = runs[args.model_index]
    device = torch.device(args.device or settings.default_device())
    step = step_timer(run, args.batch_size, device)
    step()
    step()
    while time.time() < args.start_at:  # all processes start together
        time.sleep(0.01)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        step()
        count += 1
    print(json.dumps({"images_per_second": count * args.batch_size / (time.perf_counter() - start)}))


def side_by_side(args, processes: int, model_index: int) -> float:
    """Total images per second of ``processes`` processes training the same model at once."""
    start_at = time.time() + 20 + 5 * processes  # time for every process to import and warm up
    command = [sys.executable, __file__, "--worker", "--model-index", str(model_index), "--start-at", str(start_at),
               "--seconds", str(args.seconds), "--batch-size", str(args.batch_size)]
    if args.quick:
        command.append("--quick")
    if args.device:
        command += ["--device", args.device]
    children = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
                for _ in range(processes)]
    return sum(json.loads(child.communicate()[0].strip().splitlines()[-1])["images_per_second"] for child in children)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quick sweep's models and batch size")
    parser.add_argument("--batch-size", type=positive_int, default=None, help="default: the sweep's own")
    parser.add_argument("--steps", type=positive_int, default=3, help="timed steps per turn")
    parser.add_argument("--repeats", type=positive_int, default=3, help="turns per model")
    parser.add_argument("--device", default=None)
    parser.add_argument("--processes", type=positive_int, nargs="*", default=[], help="also measure N processes side by side")
    parser.add_argument("--seconds", type=positive_float, default=15.0, help="length of each side-by-side measurement")
    parser.add_argument("--json", default=None, help="save the results to this file")
    parser.add_argument("--from-runs", metavar="FOLDER", help="fit to the finished runs of a sweep folder instead")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model-index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    scale = experiments.scale(args.quick or None)
    args.batch_size = args.batch_size or scale.train["batch_size"]
    if args.worker:
        worker(args)
        return 0
    if args.from_runs:
        result = fit_runs(args.from_runs)
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        return 0

    device = torch.device(args.device or settings.default_device())
    runs = experiments.plan("compare", quick=args.quick or None, seeds=[0])
    rows = measure(runs, args.batch_size, args.steps, args.repeats, device)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None  # how busy the machine was
    print(f"{scale.name}-scale models, batch {args.batch_size}, on {settings.device_name(device)} "
          f"(torch {torch.__version__}, {torch.get_num_threads()} threads, load average {load})")
    print(f"{'model':<20} {'px':>3} {'blocks':>6} {'MMACs':>7} {'MACs x':>7} {'ms/step':>8} {'time x':>7} {'img/s':>8}")
    for row in rows:
        print(f"{row['label']:<20} {row['resolution']:>3} {row['blocks']:>6} {row['mmacs']:>7.1f} {row['macs_factor']:>7.2f} "
              f"{row['ms_per_step']:>8.1f} {row['time_factor']:>7.2f} {row['images_per_second']:>8.0f}")
    rate, per_block, per_step = fit(rows, args.batch_size)
    print(f"fit: seconds per step = batch x GMACs / {rate:.3g} + blocks x {per_block * 1000:.2f} ms "
          f"+ {per_step * 1000:.1f} ms")
    for row in rows:
        row["fitted_ms_per_step"] = 1000 * (args.batch_size * row["mmacs"] / 1000 / rate + row["blocks"] * per_block + per_step)
    worst = max(abs(r["fitted_ms_per_step"] / r["ms_per_step"] - 1) for r in rows)
    print(f"the fit is within {100 * worst:.0f}% of every measured step time")
    fitted = experiments.CostModel("fitted here", rate, per_block, per_step)
    for name in ("compare", "grid"):
        plan = experiments.plan(name, quick=args.quick or None, batch_size=args.batch_size)
        print(f"predicted {name} sweep ({len(plan)} runs) with the fitted model: "
              f"{experiments.estimate_seconds(plan, fitted) / 60:.1f} min in one process")
    result = {"device": settings.device_name(device), "torch": torch.__version__, "python": platform.python_version(),
              "threads": torch.get_num_threads(), "scale": scale.name, "batch_size": args.batch_size,
              "load_average": load,
              "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "commit": settings.git_commit(),
              "fit": {"gmac_images_per_second": rate, "seconds_per_block": per_block, "seconds_per_step": per_step},
              "models": rows}
    if args.processes:
        heaviest = max(range(len(runs)), key=lambda i: runs[i].macs)
        result["side_by_side"] = []
        for index, name in ((0, "baseline"), (heaviest, runs[heaviest].spec.label)):
            for processes in args.processes:
                total = side_by_side(args, processes, index)
                result["side_by_side"].append({"model": name, "processes": processes, "images_per_second": total})
                print(f"{name}: {processes} process(es) side by side: {total:.0f} images/s in total")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"saved {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
