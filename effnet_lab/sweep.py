"""Run a plan of training runs: skip what is finished, resume what was interrupted (lesson 05).

Run folders are the results store. Each run of ``experiments.plan(...)`` trains in its own
folder, ``OUT/<table>/<run id>/``: ``checkpoint.pt`` while it trains, ``record.json`` once
it has finished. The record is ``effnet_lab.train``'s, with a ``run`` section that says what
the run was (experiment, family, phi, seed, shape, cost); ``effnet_lab.results`` reads the
records of a folder back as one table. So:

- rerunning the same command skips finished runs and resumes a started one from its last
  checkpoint; an interruption at any moment loses at most one epoch of one run;
- ``--shard i/n`` takes every n-th run of the plan, starting at the i-th: shards never share
  a run, so several processes (or machines) can train into the same folder at once;
- ``--max-minutes M`` starts no run that the cost model (``effnet_lab.timing``) says would
  end after M minutes; the rest waits for the next call.

    python -m effnet_lab sweep compare --quick                       # minutes on a CPU
    python -m effnet_lab sweep compare convergence --out results/scaling-gpu
    python -m effnet_lab sweep compare --shard 2/4 --out results/scaling-gpu
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import experiments, settings
from .checks import check_int, check_number
from .experiments import NATIVE_RESOLUTION, Run
from .files import write_json
from .timing import cost_model, estimate_seconds


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (1-based: 1/4, 2/4, 3/4, 4/4)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        check_int("shard count", self.count, minimum=1)
        check_int("shard index", self.index, minimum=1)
        if self.index > self.count:
            raise ValueError(f"shard {self.index}/{self.count}: the index must be between 1 and {self.count}")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """'2/4' -> Shard(2, 4); anything else is a clear error."""
        parts = str(text).strip().split("/")
        if len(parts) != 2 or not all(part.strip().isdigit() for part in parts):
            raise ValueError(f"shard must look like i/n with whole numbers 1 <= i <= n (such as 2/4), got {text!r}")
        index, count = int(parts[0]), int(parts[1])
        if count < 1 or not 1 <= index <= count:
            raise ValueError(f"shard {text!r}: need 1 <= i <= n (shards are numbered 1/{max(count, 1)} "
                             f"to {max(count, 1)}/{max(count, 1)})")
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_runs(runs: Sequence[Run], shard: Shard | None) -> list[Run]:
    """Every ``shard.count``-th run, starting at run ``shard.index`` (all of them without a shard)."""
    runs = list(runs)
    return runs if shard is None else runs[shard.index - 1::shard.count]


def default_out() -> Path:
    return settings.results_dir() / "sweeps"


def run_folder(run: Run, out: str | os.PathLike | None = None) -> Path:
    """Where ``run`` trains and keeps its record: ``OUT/<table>/<run id>``."""
    out = Path(out).expanduser() if out is not None else default_out()
    return out / run.table / run.run_id


def status(runs: Sequence[Run], out: str | os.PathLike | None = None) -> list[bool]:
    """For each run, whether it has finished (its folder holds its record)."""
    from .train import RECORD_FILE

    return [(run_folder(run, out) / RECORD_FILE).exists() for run in runs]


def run_section(run: Run) -> dict:
    """What the sweep knows about a run, for its record: what it is, its shape and its cost."""
    s, base = run.spec, run.baseline
    return {
        "experiment": run.experiment, "table": run.table, "run_id": run.run_id,
        "code_version": experiments.CODE_VERSION, "recipe": run.recipe,
        "family": s.family, "label": s.label, "phi": s.phi, "seed": run.seed,
        "width": s.width, "depth": s.depth, "resolution": s.resolution,
        "width_factor": s.width / base.width, "depth_factor": s.depth / base.depth,
        "resolution_factor": s.resolution / base.resolution,
        "alpha": s.alpha, "beta": s.beta, "gamma": s.gamma,
        "upsampled": s.resolution > NATIVE_RESOLUTION,
        "target_macs_factor": s.target, "macs_factor": run.macs / base.macs, "baseline_macs": base.macs,
        "baseline": dataclasses.asdict(base),
    }


def model_spec(run: Run) -> dict:
    """How the model was built, for the record (what defines the network, nothing else)."""
    base = run.baseline
    return {"variant": None, "width": run.spec.width, "depth": run.spec.depth, "stem": "cifar",
            "dropout": base.dropout, "drop_path_rate": base.drop_path_rate,
            "zero_init_last_bn": base.zero_init_last_bn}


@dataclass
class SweepReport:
    """What a call of ``run_sweep`` did."""

    trained: list[str] = dataclasses.field(default_factory=list)  # run ids finished now
    skipped: list[str] = dataclasses.field(default_factory=list)  # finished before
    left: list[str] = dataclasses.field(default_factory=list)  # not started: the time budget ran out
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        return not self.left

    def __str__(self) -> str:
        return (f"{len(self.trained)} trained, {len(self.skipped)} already done, "
                f"{len(self.left)} left for the next call ({self.seconds:.0f} s)")


def run_sweep(
    runs: Sequence[Run],
    out: str | os.PathLike | None = None,
    *,
    shard: Shard | None = None,
    train_fn: Callable | None = None,
    data=None,
    max_minutes: float | None = None,
    progress: bool = True,
    command: list[str] | None = None,
    log: Callable[[str], None] = print,
    packed: bool = False,
    workers: int = 1,
) -> SweepReport:
    """Train every run of this shard that has not finished yet; return what was done.

    ``out``: the results folder (default ``<results folder>/sweeps``). ``train_fn``: the
    trainer of single runs, with the signature of ``effnet_lab.train.train`` (tests pass a fake one).
    ``data``: a loaded ``CifarData`` (default: loaded once, when the first run starts).
    ``max_minutes``: start no run that the cost model says would end after this budget
    (measured speeds correct it as runs finish). ``packed``: train the runs that differ only by
    their seed together, as one grouped network (``effnet_lab.packed_train``); the budget counts
    a group as the sum of its runs for now. ``workers``: train in this many processes side by
    side, each taking the next run of this shard when it is free (``run_in_processes``).
    """
    start = time.perf_counter()
    runs = list(runs)
    if not runs:
        raise ValueError("the sweep has no runs")
    if check_int("workers", workers, minimum=1) > 1 and not all(status(shard_runs(runs, shard), out)):
        return run_in_processes(shard_runs(runs, shard), out, workers, max_minutes=max_minutes, progress=progress,
                                command=command, packed=packed)
    if max_minutes is not None:
        max_minutes = check_number("max_minutes", max_minutes, exclusive_minimum=0.0)
    from .packed_train import PACKED_CHECKPOINT_FILE, seed_groups
    from .train import run_folder_state, train

    load_data = data is None and train_fn is None  # the real trainer: load the images once, here
    train_fn = train_fn or train
    report = SweepReport()
    mine = shard_runs(runs, shard)
    model = cost_model(runs[0].train.get("device"))
    correction, timed = 1.0, 0  # measured / predicted seconds of the whole runs trained so far
    groups = seed_groups(mine) if packed else [[run] for run in mine]
    for number, group in enumerate(groups, 1):
        for run in group:
            _reuse_twin(run, out)
        states = [run_folder_state(run_folder(run, out)) for run in group]
        report.skipped += [run.run_id for run, state in zip(group, states) if state == "finished"]
        group = [run for run, state in zip(group, states) if state != "finished"]
        if not group:
            continue
        predicted = sum(model.run_seconds(run) for run in group) * correction
        if max_minutes is not None and time.perf_counter() - start + predicted > max_minutes * 60:
            report.left += [run.run_id for run in group]
            continue
        if load_data and data is None:
            from .data import load_cifar

            data = load_cifar(group[0].train.get("dataset", "cifar10"), group[0].train.get("data"), progress=progress)
        together = f" + seeds {', '.join(str(run.seed) for run in group[1:])}, packed" if len(group) > 1 else ""
        log(f"[{number}/{len(groups)}] {group[0].describe()}{together} (id {group[0].run_id}, ~{predicted:.0f} s)")
        resumed = "started" in states or (run_folder(group[0], out) / PACKED_CHECKPOINT_FILE).exists()
        run_start = time.perf_counter()
        records = _train_runs(group, out, train_fn, data, progress, command, log)
        seconds = time.perf_counter() - run_start
        report.trained += [run.run_id for run in group]
        if not resumed:  # a resumed run's time is not a whole run's
            timed += 1
            ratio = seconds / max(predicted / correction, 1e-9)
            correction += (ratio - correction) / timed
        accuracies = [record.get("test_accuracy") for record in records]
        log(f"    test accuracy {', '.join(f'{a:.2%}' for a in accuracies)} in {seconds:.0f} s"
            if all(isinstance(a, float) for a in accuracies) else f"    done in {seconds:.0f} s")
    report.seconds = time.perf_counter() - start
    return report


def _reuse_twin(run: Run, out) -> None:
    """A run another experiment has already finished under ``out`` (same run id: the grid's
    alpha = gamma = 1 candidate is the comparison's width model at phi = 1) is not trained
    again: its record is copied into this experiment's folder, with this experiment's name."""
    from .train import RECORD_FILE

    folder = run_folder(run, out)
    if (folder / RECORD_FILE).exists():
        return
    for twin in sorted(folder.parent.parent.glob(f"*/{run.run_id}/{RECORD_FILE}")):
        record = json.loads(twin.read_text())
        if record.get("status") == "complete":
            record["run"] = run_section(run)
            record["reused_from"] = str(twin.parent.relative_to(folder.parent.parent))
            write_json(folder / RECORD_FILE, record)
            return


def run_in_processes(runs: Sequence[Run], out, workers: int, *, max_minutes: float | None = None,
                     packed: bool = False, **options) -> SweepReport:
    """Train ``runs`` in ``workers`` processes side by side, one CPU thread each: on a CPU the
    quick mode's small networks leave a second thread idle (it waits for the first), and a
    second process fills the core instead. A process that is free takes the next run (or seed
    group, ``packed``), the longest first by the cost model, so that no process waits at the
    end while another still has a long run ahead. The run folders are the only thing the
    processes share, and no two ever train the same run. Each prints a line as it starts and
    finishes a run; ``progress`` shows one bar here that counts the runs."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm.auto import tqdm

    start, report = time.perf_counter(), SweepReport()
    groups = work_order(runs, packed)
    deadline = None if max_minutes is None else time.time() + max_minutes * 60
    # One bar here, counting runs: the processes' own step bars would overwrite each other.
    show_bar = options.pop("progress", True)
    jobs = [(group, out, deadline, (number, len(groups)), dict(options, packed=packed, progress=False))
            for number, group in enumerate(groups, 1)]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool, \
            tqdm(total=sum(len(group) for group in groups), unit="run", desc=f"{workers} processes",
                 disable=not show_bar) as bar:
        futures = [pool.submit(_worker, job) for job in jobs]  # handed out in order, each to the first free process
        for future in as_completed(futures):
            part = future.result()
            report.trained += part.trained
            report.skipped += part.skipped
            report.left += part.left
            bar.update(len(part.trained) + len(part.skipped) + len(part.left))
    report.seconds = time.perf_counter() - start
    return report


def work_order(runs: Sequence[Run], packed: bool = False) -> list[list[Run]]:
    """The runs (or, ``packed``, the seed groups) as processes side by side take them: the
    longest first by the cost model, so the short ones fill the gaps at the end."""
    from .packed_train import seed_groups

    model = cost_model(runs[0].train.get("device"))
    groups = seed_groups(runs) if packed else [[run] for run in runs]
    return sorted(groups, key=lambda group: sum(model.run_seconds(run) for run in group), reverse=True)


_DATA = {}  # a process's images, loaded once for all the runs it trains


def _worker(job) -> SweepReport:
    import torch

    from .data import load_cifar

    _end_with_parent()
    group, out, deadline, (number, total), options = job
    torch.set_num_threads(1)
    minutes_left = None if deadline is None else (deadline - time.time()) / 60
    if minutes_left is not None and minutes_left <= 0:
        return SweepReport(left=[run.run_id for run in group])
    config = group[0].train
    key = (config.get("dataset", "cifar10"), config.get("data"))
    if key not in _DATA:
        _DATA[key] = load_cifar(*key, progress=False)

    def log(line: str) -> None:  # this call trains one group of the sweep: number its lines within the sweep
        print(f"[{number}/{total}]{line[len('[1/1]'):]}" if line.startswith("[1/1]") else f"[{number}/{total}]{line}",
              flush=True)

    return run_sweep(group, out, max_minutes=minutes_left, data=_DATA[key], log=log, **options)


def _end_with_parent() -> None:
    """On Linux, a worker ends when the sweep that started it dies, even by SIGKILL: no orphan
    trains on beside the rerun (the interrupted runs resume from their checkpoints)."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: Ctrl-C still reaches every process of the group
        pass


def _train_runs(group, out, train_fn, data, progress, command, log) -> list[dict]:
    """Train one run with ``train_fn``, or the seeds of one run packed (``train_seeds``); return the
    records. A diverged run is a result too: recorded as failed, not retried; its group goes on."""
    from .packed_train import train_seeds
    from .train import RECORD_FILE, NonFiniteLossError

    records = []
    while group:
        try:
            if len(group) > 1:
                return records + train_seeds(group, data=data, out=out, progress=progress, command=command)
            run = group[0]
            return records + [train_fn(run.build_model(), run.train_config(), data=data, run_dir=run_folder(run, out),
                                       progress=progress, model_spec=model_spec(run), command=command,
                                       run_info=run_section(run))]
        except NonFiniteLossError as error:
            log(f"    failed: {error}")
            failed = getattr(error, "runs", group)  # packed: which of the group diverged
            for run in failed:
                records.append({"status": "failed", "error": str(error), "test_accuracy": None,
                                "config": run.train_config().to_dict(), "command": command, "run": run_section(run)})
                write_json(run_folder(run, out) / RECORD_FILE, records[-1])
            group = [run for run in group if run not in failed]
    return records


# --- the command line -------------------------------------------------------------------------


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``sweep`` with ``python -m effnet_lab``'s subcommands."""
    parser = subparsers.add_parser(
        "sweep", help="run scaling experiments (resumable, shardable)",
        description="Train every run of the named experiments that has not finished yet, each in its own run "
                    "folder under --out. Rerun the same command to continue after an interruption.",
    )
    parser.add_argument("experiments", nargs="+", metavar="EXPERIMENT",
                        help="one or more of: " + ", ".join(f"{e.name} ({e.description})"
                                                            for e in experiments.EXPERIMENTS.values()))
    parser.add_argument("--quick", action="store_true", default=None,
                        help=f"quick mode: a small baseline, a few thousand images (also {settings.QUICK_ENV}=1)")
    parser.add_argument("--phis", nargs="+", type=float, help="the phis to scale to (default: the experiment's own)")
    parser.add_argument("--seeds", nargs="+", type=int, help="seeds (default: 0 1 2; quick mode and grids: 0)")
    parser.add_argument("--epochs", type=int, help="training epochs of every run")
    parser.add_argument("--batch-size", type=int, help="training batch size of every run")
    parser.add_argument("--subset-per-class", type=int, help="training images per class of every run (default: all; "
                                                             "quick mode: the recipe's)")
    parser.add_argument("--test-per-class", type=int, help="test images per class (default: the full test set)")
    parser.add_argument("--shard", default="1/1", help="train shard i of n (every n-th run from the i-th), e.g. 2/4")
    parser.add_argument("--out", help="results folder (default: <results folder>/sweeps)")
    parser.add_argument("--data", help=f"folder or .tar.gz with the images (default: ${settings.DATA_ENV} or found)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 (default: the GPU when there is one)")
    parser.add_argument("--max-minutes", type=float,
                        help="start no run that would end after this many minutes (the rest waits for the next call)")
    parser.add_argument("--packed", action="store_true",
                        help="train the seeds of each model as one grouped network: fewer, larger GPU kernels; "
                             "measure first with benchmarks/step_speed.py")
    parser.add_argument("--workers", type=int, help="processes side by side (default: quick mode on a CPU, one per "
                                                    "core up to 4; else 1)")
    parser.add_argument("--list", action="store_true", help="print the runs, their cost and status; train nothing")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    parser.set_defaults(run=main)
    return parser


def default_workers(quick: bool, device: str | None = None) -> int:
    """Quick mode on a CPU: one process per core, up to 4; on a GPU (or at full scale) one."""
    on_cpu = str(device or settings.default_device()).startswith("cpu")
    return max(1, min(4, os.cpu_count() or 1)) if quick and on_cpu else 1


def main(args: argparse.Namespace) -> int:
    shard = Shard.parse(args.shard)
    overrides = {name: getattr(args, name) for name in ("batch_size", "subset_per_class", "test_per_class", "data", "device")
                 if getattr(args, name, None) is not None}
    runs = experiments.plan(args.experiments, quick=args.quick, phis=args.phis, seeds=args.seeds,
                            epochs=args.epochs, **overrides)
    out = Path(args.out).expanduser() if args.out else default_out()
    scale = experiments.scale(args.quick)
    if scale.name == "quick" and "OMP_NUM_THREADS" not in os.environ:
        import torch

        # Quick mode's networks are tiny: extra CPU threads only wait for each other (on a busy
        # 2-core machine the quick comparison took 398 s with two threads, 39 s with one).
        torch.set_num_threads(1)
    mine = shard_runs(runs, shard)
    finished = status(mine, out)
    model = cost_model(overrides.get("device"))
    todo = [run for run, done in zip(mine, finished) if not done]
    workers = args.workers or default_workers(scale.name == "quick", overrides.get("device"))
    print(f"{len(runs)} runs in {', '.join(args.experiments)} ({scale.name} scale); shard {shard}: "
          f"{len(mine)} runs, {len(mine) - len(todo)} done, {len(todo)} to do, about "
          f"{estimate_seconds(todo, model, processes=workers) / 60:.1f} min on {model.name}"
          f"{f' with {workers} processes' if workers > 1 else ''}. Results: {out}")
    if args.list:
        for run, done in zip(mine, finished):
            print(f"  {'done' if done else 'todo'}  {run.run_id}  {run.experiment:<11} "
                  f"{run.describe()}  ~{model.run_seconds(run):.0f} s")
        return 0
    report = run_sweep(runs, out, shard=shard, max_minutes=args.max_minutes, progress=args.progress,
                       command=getattr(args, "command_line", None), packed=args.packed, workers=workers)
    print(f"shard {shard}: {report}")
    if report.left:
        print("time budget reached: run the same command again to continue")
    return 0
