"""Does bf16 autocast cost the scaling comparison accuracy? The compare baseline in fp32 on the GPU.

Why: the comparison's baseline (width 0.5, 21 px, 6 epochs) reached 48.3% and 48.8% on an
NVIDIA H200 under bf16 autocast, but 65.3% when the same recipe ran in fp32 on this project's
development CPU (seed 0; the CPU cannot run bf16 at a usable speed, so it cannot test bf16
itself), with a lower training loss (1.27 against 1.63). One run proves little: this recipe's
seeds already differ by up to 23 points on the GPU. And bf16 is not an obvious culprit: at
initialisation one batch's gradients under bf16 autocast agree with the fp32 ones to a cosine
of 0.3 to 0.75 (``--gradients``), while two different batches' fp32 gradients agree to
about 0.0-0.06, so rounding adds far less noise than sampling the batch does. A few GPU
minutes settle it: if the GPU's fp32 runs land near the CPU's and its bf16 rerun near 48%,
precision is the cause, and the scaling runs and the time-to-accuracy recipe should train in
fp32 (TF32); if the rerun of the same bf16 run lands far from its first time, the spread is
the recipe's own instability, which the comparison must then report.

What it runs: the compare baseline, exactly as ``effnet_lab.experiments`` plans it, trained
one run after another on the one GPU (alone, so the times are comparable):

- fp32 (``amp=False``), seeds 0 and 1: against the bf16 rows already in
  ``results/scaling-gpu/compare/``;
- bf16 again, seed 0: how far a rerun of the same bf16 run lands from its first time.

Each run keeps its folder under ``--out`` (``fp32-seed0/record.json`` ...); a finished run
is not trained again, an interrupted one resumes. ``summary.json``, written once the runs are
done, puts the rows side by side with the bf16 rows of the comparison (``gpu_jobs`` counts the
item done when it exists).

    PYTHONPATH=. python benchmarks/precision_check.py --out results/precision-check
    PYTHONPATH=. python benchmarks/precision_check.py --quick --out /tmp/pc   # CPU smoke test
    PYTHONPATH=. python benchmarks/precision_check.py --gradients              # the gradient check (CPU)
    PYTHONPATH=. python benchmarks/precision_check.py --device cpu --runs fp32-seed0 --out runs/precision-cpu
        # the CPU run (24 min here); another --out, so that it is never taken for the GPU's
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout, uninstalled

from effnet_lab import experiments  # noqa: E402
from effnet_lab.data import load_cifar  # noqa: E402
from effnet_lab.files import write_json  # noqa: E402
from effnet_lab.model import build  # noqa: E402
from effnet_lab.train import train  # noqa: E402

RUNS = [("fp32", 0), ("fp32", 1), ("bf16", 0)]  # in order of what they tell
COMPARE_TABLE = ROOT / "results" / "scaling-gpu" / "compare" / "results.jsonl"


def baseline_run(seed: int, quick: bool) -> experiments.Run:
    return next(run for run in experiments.plan("compare", quick=quick, seeds=[seed]) if run.spec.family == "baseline")


def gradient_agreement(data, quick: bool, seeds=(0, 1, 2)) -> None:
    """Cosine between one batch's gradients in fp32 and under bf16 autocast, for freshly built baselines.

    On the CPU here: bf16 autocast is slow on a CPU without bf16 instructions, but one batch is enough.
    """
    import torch
    import torch.nn.functional as F

    from effnet_lab.data import DeviceLoader

    run = baseline_run(0, quick)
    loader = DeviceLoader.from_data(data, "train", run.train["batch_size"], resolution=run.spec.resolution,
                                    device="cpu", channels_last=True)
    batches = iter(loader)
    first, second = next(batches), next(batches)

    def gradient(model, batch, bf16: bool):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(batch[0]), batch[1], label_smoothing=run.train["label_smoothing"])
        loss.backward()
        return torch.cat([p.grad.flatten().float() for p in model.parameters()])

    for seed in seeds:
        torch.manual_seed(seed)
        model = build(run.model_config()).to(memory_format=torch.channels_last).train()
        fp32, bf16, other_batch = gradient(model, first, False), gradient(model, first, True), gradient(model, second, False)
        print(f"initialisation seed {seed}: gradient cosine, fp32 against bf16 autocast (one batch) "
              f"{F.cosine_similarity(fp32, bf16, dim=0).item():.3f}; "
              f"two batches, both fp32 {F.cosine_similarity(fp32, other_batch, dim=0).item():.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/precision-check", help="folder of the run folders and summary")
    parser.add_argument("--data", help="CIFAR-10 folder or .tar.gz (default: EFFNET_LAB_DATA or found)")
    parser.add_argument("--quick", action="store_true", help="the quick-mode baseline (a CPU smoke test)")
    parser.add_argument("--device", help="cpu or cuda (default: the GPU if there is one)")
    parser.add_argument("--runs", nargs="+", choices=[f"{p}-seed{s}" for p, s in RUNS], help="only these runs")
    parser.add_argument("--gradients", action="store_true", help="only the gradient check, on the CPU")
    args = parser.parse_args(argv)

    out = Path(args.out)
    data = load_cifar("cifar10", args.data, progress=False)
    if args.gradients:
        gradient_agreement(data, args.quick)
        return 0
    rows = []
    for precision, seed in RUNS:
        name = f"{precision}-seed{seed}"
        if args.runs and name not in args.runs:
            continue
        run = baseline_run(seed, args.quick)
        config = run.train_config(amp=precision == "bf16", device=args.device)
        print(f"{name}: {run.describe()}", flush=True)
        record = train(build(run.model_config()), config, data=data, run_dir=out / name, progress=False,
                       command=[sys.executable, *sys.argv])
        rows.append({"run": name, "precision": record["precision"], "seed": seed,
                     "test_accuracy": record["test_accuracy"],
                     "final_train_loss": record["accuracy_curve"][-1]["train_loss"],
                     "accuracy_by_epoch": [p["test_accuracy"] for p in record["accuracy_curve"]],
                     "train_seconds": record["train_seconds"], "device": record["device"],
                     "torch_version": record["torch_version"], "git_commit": record["git_commit"]})
        print(f"  {record['precision']}: {record['test_accuracy']:.2%} after {record['train_seconds']:.0f} s "
              f"on {record['device']}", flush=True)

    compared = []
    if COMPARE_TABLE.exists() and not args.quick:
        compared = [{"run": f"compare table, seed {row['seed']}", "precision": row["precision"], "seed": row["seed"],
                     "test_accuracy": row["test_accuracy"], "device": row["device"], "git_commit": row["git_commit"]}
                    for row in experiments.read_table(COMPARE_TABLE) if row["family"] == "baseline"]
    write_json(out / "summary.json", {
        "question": "does bf16 autocast cost the compare baseline accuracy?",
        "runs": rows, "compare_table_rows": compared, "command": [sys.executable, *sys.argv],
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "quick": args.quick,
    })
    for row in rows + compared:
        print(f"{row['run']:>24}  {row['precision']:<14} {row['test_accuracy']:.2%}")
    print(f"summary: {out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
