"""Regenerate every shipped GPU result on your own GPU: ``python -m effnet_lab reproduce``.

The results under ``results/`` that need a GPU come from seven jobs, run in the order of
``JOBS``, each into its folder under ``--out`` (the checkout's ``results/`` by default):

    python -m effnet_lab reproduce --list              # every job: done, partly done or to do
    python -m effnet_lab reproduce                     # everything not done yet
    python -m effnet_lab reproduce scaling grid --minutes 30
    python -m effnet_lab reproduce --quick             # every job, small, on a CPU (into runs/)

A job is done when the files it writes exist (a sweep: every run of its plan has its
``record.json``), so a rerun skips it; an interrupted job resumes from its own plans and
checkpoints. ``--minutes N`` is a time budget: the jobs that keep a budget themselves (the
sweeps, the search, the fine-tuning) get the minutes left; a job that runs in one piece is
not started when its estimate does not fit, and reproduce says so and stops there. A
command still running a minute past the budget is interrupted (SIGINT: training keeps its
last checkpoint). On Colab, put ``--out`` in Google Drive so that a disconnect costs at
most the epoch in progress.

Estimates are minutes on one large GPU: measured on an NVIDIA H200 where a results folder's
README says so, the sweeps' from their cost model (``timing.cost_model``), otherwise an
estimate, said as such beside the number.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import settings
from .checks import positive_float

NO_CHECKOUT = ("reproduce runs from a checkout of effnet-lab: git clone https://github.com/effnet-lab/effnet-lab, "
               "then pip install -e . in it")
QUICK_SCRIPT_MINUTES = 1.0  # a script with --quick, on a laptop CPU
NAS_CHILDREN = 60  # per policy, in the real-training search
FINETUNE_BUDGET = 7.5  # minutes: finetune_lite0.py plans its epochs to fit this (its own default)
GRACE_SECONDS = 60  # past the budget, before a command still running is interrupted


@dataclass
class Options:
    """What one ``reproduce`` call was asked for, as every job's commands need it."""

    root: Path  # the checkout
    out: Path
    quick: bool
    progress: bool


@dataclass
class Step:
    """One command of a job, and how to tell from the files it writes that it has run."""

    argv: list[str]
    done: Callable[[], bool]
    minutes: float  # what is left of it, estimated on one large GPU (quick mode: on a CPU)
    started: Callable[[], bool] = lambda: False  # some of its files exist: a rerun resumes
    budget: Callable[[float], list[str]] | None = None  # its time-budget arguments, given minutes left


@dataclass(frozen=True)
class Job:
    name: str
    measures: str
    folder: str  # under --out
    steps: Callable[[Options], list[Step]]  # its commands, in order, as the files under o.out stand now

    def done(self, o: Options) -> bool:
        return all(step.done() for step in self.steps(o))


def state(steps: list[Step]) -> str:
    """A job's state, from its steps: "done", "partly done" or "to do"."""
    if all(step.done() for step in steps):
        return "done"
    return "partly done" if any(step.done() or step.started() for step in steps) else "to do"


# --- how each job's commands are made ---------------------------------------------------------


def script(o: Options, name: str, *args) -> list[str]:
    return [sys.executable, str(o.root / "benchmarks" / name), *map(str, args)]


def files(*paths: Path) -> Callable[[], bool]:
    return lambda: all(path.exists() for path in paths)


def command(o: Options, argv: list[str], done: Callable[[], bool], minutes: float, **extra) -> Step:
    """A script or command with quick mode's ``--quick``; nothing left of ``minutes`` once done."""
    left = 0.0 if done() else QUICK_SCRIPT_MINUTES if o.quick else minutes
    return Step(argv + (["--quick"] if o.quick else []), done, left, **extra)


def sweep(o: Options, experiments: list[str], folder: Path) -> Step:
    """``python -m effnet_lab sweep``: done when every run of the plan has its record."""
    from . import experiments as plans
    from . import sweep as runner
    from . import timing

    runs = plans.plan(experiments, quick=o.quick)
    finished = lambda: runner.status(runs, folder)  # noqa: E731
    todo = [run for run, done in zip(runs, finished()) if not done]
    # The cost model's H100 figures are conservative: an H200 trained the comparison's
    # baseline in 16 s where they predict 24 s (results/cost_model/README.md).
    minutes = timing.estimate_seconds(todo, timing.cost_model("cpu" if o.quick else "cuda")) / 60
    argv = [sys.executable, "-m", "effnet_lab", "sweep", *experiments, "--out", str(folder)]
    argv += (["--quick"] if o.quick else []) + ([] if o.progress else ["--no-progress"])
    return Step(argv, lambda: all(finished()), minutes, started=lambda: any(finished()),
                budget=lambda left: ["--max-minutes", f"{left:.2f}"])


def pilot(o: Options) -> list[Step]:
    folder = o.out / "pilot"
    speed = folder / "step-speed.json"
    return [command(o, script(o, "step_speed.py", "--out", speed), files(speed), 1.0),  # an estimate
            sweep(o, ["pilot"], folder)]


def throughput(o: Options) -> list[Step]:
    folder = o.out / "gpu-throughput"
    eager, loading = folder / "throughput-eager.json", folder / "data-pipeline.json"
    # Minutes measured on an NVIDIA H200 (results/gpu-throughput/README.md), the compiled ones
    # mostly compiling; quick mode leaves those out, as torch.compile alone takes minutes on a CPU.
    steps = [command(o, script(o, "throughput.py", "--config", "both", "--out", eager), files(eager), 1.0),
             # The GPU's question: the full CIFAR epoch of the time-to-accuracy recipe (B0, 32 px, batch 512).
             command(o, script(o, "data_pipeline.py", "--width", "1", "--depth", "1", "--resolution", "32",
                               "--batch-size", "512", "--per-class", "5000", "--out", loading), files(loading), 1.0)]
    for config, minutes in ([] if o.quick else [("cifar", 3.3), ("imagenet", 3.4)]):
        compiled = folder / f"throughput-compile-{config}.json"
        steps.append(command(o, script(o, "throughput.py", "--config", config, "--compile", "--out", compiled),
                             files(compiled), minutes))
    return steps


def scaling(o: Options) -> list[Step]:
    return [sweep(o, ["compare", "convergence"], o.out / "scaling-gpu")]


def time_to_accuracy(o: Options) -> list[Step]:
    folder = o.out / "time-to-accuracy"
    argv = script(o, "time_to_accuracy.py", "--out", folder) + ([] if o.progress else ["--no-progress"])
    # Measured on an NVIDIA H200 (results/time-to-accuracy/README.md): the probe 0.4 minutes, then
    # the 5 minutes of training it plans, the test passes and the start-up.
    return [command(o, argv, files(folder / "summary.json"), 7.0, started=files(folder / "plan.json"))]


def grid(o: Options) -> list[Step]:
    return [sweep(o, ["grid"], o.out / "scaling-gpu")]


def nas(o: Options) -> list[Step]:
    folder = o.out / "nas" / "cifar10-train-seed0"
    children = 2 if o.quick else NAS_CHILDREN
    logs = [folder / f"{policy}.jsonl" for policy in ("controller", "random")]

    def done() -> bool:  # each policy's log has a line per child
        return all(log.exists() and len(log.read_text().splitlines()) >= children for log in logs)

    argv = [sys.executable, "-m", "effnet_lab", "nas", "--policy", "both", "--evaluator", "train", "--seed", "0",
            "--steps", str(children), "--out", str(folder)]
    # An estimate: 120 children of 200 steps at batch 256, launch-bound at about 35 ms a step on
    # an H200 (results/gpu-throughput/README.md), about 10 s each with the test pass.
    return [command(o, argv, done, 20.0, started=files(logs[0]),
                    budget=lambda left: ["--time-limit", f"{60 * left:.0f}"])]


def finetune(o: Options) -> list[Step]:
    folder = o.out / "transfer_lite0"
    argv = script(o, "finetune_lite0.py", "--out", folder) + ([] if o.progress else ["--no-progress"])
    # An estimate: the script plans its epochs to fit its budget (FINETUNE_BUDGET).
    records = [folder / f"{phase}.json" for phase in ("probe", "finetune", "scratch")]
    return [command(o, argv, files(*records), FINETUNE_BUDGET, started=files(folder / "plan.json"),
                    budget=lambda left: ["--budget-minutes", f"{min(left, FINETUNE_BUDGET):.2f}"])]


JOBS = [
    Job("pilot", "the training step's speed here; the recipe candidates on the baseline (3 seeds, 1 at twice "
        "the length)", "pilot", pilot),
    Job("throughput", "B0 training throughput against timm and torchvision, eager and compiled; what loading "
        "the data costs", "gpu-throughput", throughput),
    Job("scaling", "single-axis against compound scaling at phi 1-3 (3 seeds); twice the epochs for phi <= 1",
        "scaling-gpu", scaling),
    Job("time-to-accuracy", "how soon B0 reaches 90% CIFAR-10 test accuracy (target: 5 minutes of training)",
        "time-to-accuracy", time_to_accuracy),
    Job("grid", "the alpha/beta/gamma grid search at phi = 1", "scaling-gpu", grid),
    Job("nas", f"architecture search with real child training: controller against random, {NAS_CHILDREN} "
        "children each", "nas/cifar10-train-seed0", nas),
    Job("finetune", "ImageNet-trained Lite0 on CIFAR-10 at 224 px: linear probes, fine-tuning, from scratch",
        "transfer_lite0", finetune),
]
BY_NAME = {job.name: job for job in JOBS}


# --- running them ----------------------------------------------------------------------------


def choose(names: list[str]) -> list[Job]:
    """The jobs named (all when none), in the list's order."""
    unknown = [name for name in names if name not in BY_NAME]
    if unknown:
        raise ValueError(f"unknown job {unknown[0]!r}; the jobs are: {', '.join(BY_NAME)}")
    return [job for job in JOBS if not names or job.name in names]


def show_list(jobs: list[Job], o: Options) -> None:
    where = "a laptop CPU (quick mode)" if o.quick else "one large GPU"
    print(f"{'job':<17} {'state':<12} {'left':>9}  what it measures (folder under {o.out})")
    total = 0.0
    for job in jobs:
        steps = job.steps(o)
        left = sum(step.minutes for step in steps)
        total += left
        print(f"{job.name:<17} {state(steps):<12} {left:>5.0f} min  {job.measures} ({job.folder}/)")
    print(f"total left: about {total:.0f} minutes on {where}")


def run_command(argv: list[str], o: Options, env: dict, deadline: float | None) -> int | None:
    """Run one command from the checkout, its output straight to ours: its exit code, or None
    when it was still running GRACE_SECONDS past the deadline and was interrupted."""
    process = subprocess.Popen(argv, cwd=o.root, env=env)
    try:
        timeout = None if deadline is None else max(1.0, deadline + GRACE_SECONDS - time.monotonic())
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)  # training runs keep their last checkpoint
        stop(process)
        return None
    except KeyboardInterrupt:  # Ctrl-C reached the command too: let it save its state
        stop(process)
        raise


def stop(process: subprocess.Popen) -> None:
    """Give the command 30 s to save its state and exit, then end it."""
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run_job(job: Job, o: Options, env: dict, deadline: float | None) -> str:
    """Run the job's unfinished commands in order: "done", "stopped" (the budget) or "failed"."""
    for step in job.steps(o):
        if step.done():
            continue
        argv = step.argv
        if deadline is not None:
            left = (deadline - time.monotonic()) / 60
            if step.budget is None and step.minutes > left:
                print(f"[{job.name}] not started: it runs in one piece, about {step.minutes:.0f} min, and "
                      f"{max(left, 0):.1f} min of the budget are left; rerun with more minutes", flush=True)
                return "stopped"
            if step.budget is not None and left < 1:
                print(f"[{job.name}] not started: less than a minute of the budget is left", flush=True)
                return "stopped"
            argv = argv + (step.budget(left - 0.5) if step.budget else [])  # half a minute to write
        print(f"[{job.name}] {shlex.join(argv)}", flush=True)
        code = run_command(argv, o, env, deadline)
        if code == 0 and step.done():
            continue
        if code is None or code == 0 or (deadline is not None and time.monotonic() > deadline):
            print(f"[{job.name}] stopped at the time budget: rerun the same command to continue", flush=True)
            return "stopped"
        print(f"[{job.name}] failed with exit code {code}: see its output above", flush=True)
        return "failed"
    print(f"[{job.name}] done: {o.out / job.folder}", flush=True)
    return "done"


def run_jobs(jobs: list[Job], o: Options, minutes: float | None, env: dict) -> int:
    """The jobs in order until the budget ends (a failed job does not stop the others): 0, or 1 if one failed."""
    deadline = None if minutes is None else time.monotonic() + 60 * minutes
    failed = []
    for job in jobs:
        outcome = run_job(job, o, env, deadline)
        if outcome == "stopped":  # the jobs after it wait for the next run
            break
        if outcome == "failed":
            failed.append(job.name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "reproduce", help="regenerate the shipped GPU results on your own GPU (resumable, with a time budget)",
        description="Run the jobs that regenerate the GPU results under results/, in order: skip what is done, "
                    f"resume what was interrupted, stop within --minutes. Jobs: {', '.join(BY_NAME)} "
                    "(--list says what each measures and what is left).")
    parser.add_argument("jobs", nargs="*", metavar="JOB", help="the jobs to run, in the list's order (default: all)")
    parser.add_argument("--out", help="the results folder (default: the checkout's results/; "
                                      "with --quick, reproduce-quick/ in the runs folder)")
    parser.add_argument("--minutes", type=positive_float, help="the time budget (default: none)")
    parser.add_argument("--list", action="store_true", help="print every job's state and estimate; run nothing")
    parser.add_argument("--quick", action="store_true", help="every job with quick settings, to check it on a CPU")
    parser.add_argument("--data", help=f"CIFAR-10 folder or .tar.gz (default: ${settings.DATA_ENV} or found)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    parser.set_defaults(run=main)
    return parser


def main(args: argparse.Namespace) -> int:
    root = settings.project_root()
    if root is None or not (root / "benchmarks").is_dir():
        raise FileNotFoundError(NO_CHECKOUT)
    jobs = choose(args.jobs)
    # Quick runs never write into the shipped results.
    out = Path(args.out) if args.out else (settings.results_dir() / "reproduce-quick" if args.quick
                                           else settings.shipped_results_dir())
    o = Options(root, out.expanduser().resolve(), args.quick, args.progress and sys.stdout.isatty())
    if args.list:
        show_list(jobs, o)
        return 0
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    if args.data:  # the commands run from the checkout: a relative path must still find the data
        env[settings.DATA_ENV] = str(Path(args.data).expanduser().resolve()) if Path(args.data).exists() else args.data
    if not o.progress:
        env["TQDM_DISABLE"] = "1"  # the bars of commands without --no-progress too
    o.out.mkdir(parents=True, exist_ok=True)
    try:
        return run_jobs(jobs, o, args.minutes, env)
    except KeyboardInterrupt:
        print("\nreproduce: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
