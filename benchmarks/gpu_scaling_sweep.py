"""One chunk (at most 8 minutes) of the full-scale scaling experiments on one GPU. Rerun to continue.

Run from the project's root on the GPU machine (no installs needed beyond torch, pandas,
seaborn; the package is used from the working tree)::

    PYTHONPATH=. python benchmarks/gpu_scaling_sweep.py                      # compare + grid
    PYTHONPATH=. python benchmarks/gpu_scaling_sweep.py --experiments grid   # one experiment

What one call does:

1. decodes CIFAR-10 once into the cache (``--data``, else ``EFFNET_LAB_DATA`` or the places
   ``effnet_lab.data`` searches), so that the sweep processes only read it;
2. starts ``--processes`` sweep processes (``python -m effnet_lab sweep ... --shard i/P``)
   side by side on the one GPU: small CIFAR models leave most of an H100 idle, and the
   processes fill it. Each one skips the runs already in the results tables and starts no
   run that its cost model says would end after the chunk's budget;
3. at the deadline (``--minutes``), interrupts any process still training (its last epoch
   is checkpointed; on a fresh machine that run simply starts again next time);
4. merges each experiment's shard files into ``<out>/<experiment>/results.jsonl``, writes
   ``status.json`` beside it (runs planned, runs left), and prints what is done and what is
   left, with measured against predicted seconds per run. ``benchmarks/gpu_jobs.py`` sends
   the tables back from the GPU machine; commit them under ``results/`` and call again until
   nothing is left.

On a CPU, ``--quick`` with a couple of processes checks the whole mechanism in a minute or two.
"""

from __future__ import annotations

import argparse
import datetime
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the package from this working tree, installed or not

from effnet_lab import experiments, settings  # noqa: E402
from effnet_lab.checks import positive_float, positive_int  # noqa: E402
from effnet_lab.files import write_json  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", nargs="+", default=["compare", "grid"])
    parser.add_argument("--processes", type=positive_int, default=4, help="sweep processes side by side on the GPU")
    parser.add_argument("--minutes", type=positive_float, default=7.5, help="the whole chunk's deadline, data included")
    parser.add_argument("--out", default=str(ROOT / "results" / "scaling-gpu"), help="folder of the results tables")
    parser.add_argument("--runs-dir", default=None, help="run folders with checkpoints (default: <results folder>/sweep-runs)")
    parser.add_argument("--data", default=None, help="CIFAR-10 folder or .tar.gz (default: found as effnet_lab.data does)")
    parser.add_argument("--quick", action="store_true", help="quick-mode runs (to test the script on a CPU)")
    parser.add_argument("--phis", nargs="+", default=None)
    parser.add_argument("--seeds", nargs="+", default=None)
    parser.add_argument("--epochs", default=None)
    parser.add_argument("--no-amp", dest="amp", action="store_false",
                        help="train in fp32 instead of bf16 autocast (a table holds runs of one precision)")
    return parser.parse_args(argv)


def sweep_command(args, shard: str, minutes: float, runs_dir: Path) -> list[str]:
    command = [sys.executable, "-m", "effnet_lab", "sweep", *args.experiments, "--shard", shard, "--out", args.out,
               "--runs-dir", str(runs_dir), "--max-minutes", f"{minutes:.2f}", "--no-progress"]
    for flag, value in (("--phis", args.phis), ("--seeds", args.seeds)):
        if value:
            command += [flag, *value]
    if args.epochs:
        command += ["--epochs", str(args.epochs)]
    if args.data:
        command += ["--data", args.data]
    if args.quick:
        command.append("--quick")
    if not args.amp:
        command.append("--no-amp")
    return command


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    deadline = start + args.minutes * 60
    runs_dir = Path(args.runs_dir) if args.runs_dir else experiments.default_runs_dir()
    log_dir = runs_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    if args.data:
        env[settings.DATA_ENV] = args.data

    runs = experiments.plan(args.experiments, quick=args.quick or None,
                            phis=[float(p) for p in args.phis] if args.phis else None,
                            seeds=[int(s) for s in args.seeds] if args.seeds else None,
                            epochs=int(args.epochs) if args.epochs else None,
                            **({} if args.amp else {"amp": False}))
    try:  # a damaged table, or one of the other precision: refused before any process starts
        experiments.check_one_precision(runs, args.out)
    except experiments.ResultsError as error:
        print(f"gpu_scaling_sweep: {error}", file=sys.stderr)
        return 2
    todo = [run for run, done in zip(runs, experiments.status(runs, args.out)) if not done]
    model = experiments.cost_model()
    print(f"{len(runs)} runs, {len(runs) - len(todo)} done, {len(todo)} to do: about "
          f"{experiments.estimate_seconds(todo, model, args.processes) / 60:.1f} min on {model.name} "
          f"with {args.processes} processes; this chunk stops at {args.minutes:g} min", flush=True)

    if todo:
        from effnet_lab.data import load_cifar

        data = load_cifar("cifar10", args.data, progress=False)  # decode and cache once, here
        print(f"data: {data} ({time.perf_counter() - start:.0f} s)", flush=True)
        del data
        # Each process gets what is left of the chunk, less a margin to merge and copy.
        budget = max(0.1, (deadline - time.perf_counter() - 20) / 60)
        processes = []
        for index in range(1, args.processes + 1):
            shard = f"{index}/{args.processes}"
            log = open(log_dir / f"shard-{index}-of-{args.processes}.log", "a")
            command = sweep_command(args, shard, budget, runs_dir)
            processes.append((subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT), log))
        while any(p.poll() is None for p, _ in processes) and time.perf_counter() < deadline - 15:
            time.sleep(2)
        for process, _ in processes:  # past the deadline: stop cleanly (checkpoints are kept)
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process, log in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()

    report(args, runs, runs_dir, log_dir, start)
    return 0


def report(args, runs, runs_dir: Path, log_dir: Path, start: float) -> str:
    lines = []
    for table in dict.fromkeys(run.table for run in runs):
        folder = Path(args.out) / table
        if folder.is_dir() and any(folder.glob("*.jsonl")):
            experiments.merge_tables(folder)
    rows = {(table, row["run_id"]): row for table in dict.fromkeys(run.table for run in runs)
            if (Path(args.out) / table).is_dir() for row in experiments.read_results(Path(args.out) / table)}
    model = experiments.cost_model()
    left = [run for run in runs if (run.table, run.run_id) not in rows]
    for table in dict.fromkeys(run.table for run in runs):  # read by benchmarks/gpu_jobs.py
        planned = [run for run in runs if run.table == table]
        write_json(Path(args.out) / table / "status.json", {
            "runs": len(planned), "left": sum(run in left for run in planned),
            "failed": sum(rows[run.table, run.run_id].get("test_accuracy") is None for run in planned if run not in left),
            "updated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})
    lines.append(f"{len(runs) - len(left)} of {len(runs)} runs done; {len(left)} left "
                 f"(chunk took {(time.perf_counter() - start) / 60:.1f} min)")
    for run in runs:
        row = rows.get((run.table, run.run_id))
        if row is not None and row.get("test_accuracy") is not None:
            lines.append(f"  done {run.run_id} {run.describe()}: {100 * row['test_accuracy']:.2f}% in "
                         f"{row.get('train_seconds', float('nan')):.0f} s (predicted {model.run_seconds(run):.0f} s) "
                         f"on {row.get('device')}")
        elif row is not None:
            lines.append(f"  FAILED {run.run_id} {run.describe()}: {row.get('error')}")
    if left:
        lines.append("to continue, run the same command again: " + " ".join(sys.argv))
    for log in sorted(log_dir.glob("shard-*.log")):
        tail = log.read_text(errors="replace").splitlines()[-3:]
        lines.append(f"--- {log.name} (last lines)")
        lines += tail
    text = "\n".join(lines) + "\n"
    print(text)
    return text


if __name__ == "__main__":
    sys.exit(main())
