"""Run folders as a sweep writes them (``OUT/<table>/<run_id>/record.json``), for the tests of
effnet_lab.results and effnet_lab.plots: a training record with a sweep's ``run`` section."""

from __future__ import annotations

import hashlib
import json
import math
import zlib
from pathlib import Path

BASELINE = {"width": 0.5, "depth": 1.0, "resolution": 21, "num_classes": 10, "dropout": 0.0, "drop_path_rate": 0.0}
BASE_MACS = 20e6
# How each family grows with phi: (width, depth, resolution) multipliers at phi = 1.
GROWTH = {"baseline": (1.0, 1.0, 1.0), "width": (2 ** 0.5, 1.0, 1.0), "depth": (1.0, 2.0, 1.0),
          "resolution": (1.0, 1.0, 2 ** 0.5), "compound": (1.1, 1.2, 1.15)}


def write_run(root: Path, *, family: str = "baseline", phi: float = 0.0, seed: int = 0, accuracy: float | None = 0.6,
              epochs: int = 4, table: str = "compare", experiment: str | None = None, quick: bool = False,
              seconds: float = 100.0, first_loss: float = 1.9, recipe: str = "comparison",
              width: float | None = None, depth: float | None = None, resolution: int | None = None,
              alpha: float | None = None, gamma: float | None = None, precision: str = "fp32") -> Path:
    """Write one run's record.json under ``root/table/run_id/`` and return the file."""
    w, d, r = GROWTH.get(family, (1.0, 1.0, 1.0))
    width = width if width is not None else BASELINE["width"] * w ** phi
    depth = depth if depth is not None else BASELINE["depth"] * d ** phi
    resolution = resolution if resolution is not None else round(BASELINE["resolution"] * r ** phi)
    macs = BASE_MACS * 2 ** phi * (1 + 0.01 * (zlib.crc32(family.encode()) % 5))
    config = {"dataset": "cifar10", "epochs": epochs, "batch_size": 256, "lr": 0.1, "optimizer": "sgd",
              "weight_decay": 5e-4, "label_smoothing": 0.1, "resolution": resolution, "seed": seed,
              "amp": precision != "fp32", "quick": quick, "data": None, "device": None, "compile": False}
    key = json.dumps([family, phi, width, depth, resolution, alpha, gamma, recipe, config], sort_keys=True)
    run_id = hashlib.sha256(key.encode()).hexdigest()[:16]
    failed = accuracy is None
    curve = [] if failed else [
        {"epoch": e, "seconds": seconds * e / epochs, "test_accuracy": accuracy * e / epochs,
         "train_loss": first_loss / math.sqrt(e), "lr": 0.1} for e in range(1, epochs + 1)]
    record = {
        "status": "failed" if failed else "complete", "test_accuracy": accuracy,
        "test_set": "full test set (10000 images)", "train_seconds": seconds,
        "images_per_second": 50_000 * epochs / seconds, "params": int(1e6 * width * depth), "macs": macs,
        "device": "NVIDIA H200", "precision": precision, "torch_version": "2.14.1", "git_commit": "abc1234",
        "date": "2026-12-01T20:00:00+00:00", "quick_mode": quick, "data_source": "cifar10-jpeg.tar.gz",
        "resolution": resolution, "epochs": epochs, "seed": seed, "accuracy_curve": curve, "config": config,
        "model": {"config": {"width": width, "depth": depth}}, "command": ["python", "-m", "effnet_lab", "sweep"],
        "run": {
            "experiment": experiment or table, "table": table, "run_id": run_id, "code_version": 3,
            "recipe": recipe, "family": family, "label": f"{family} phi={phi:g}", "phi": phi, "seed": seed,
            "width": width, "depth": depth, "resolution": resolution, "width_factor": width / BASELINE["width"],
            "depth_factor": depth / BASELINE["depth"], "resolution_factor": resolution / BASELINE["resolution"],
            "alpha": alpha, "beta": None, "gamma": gamma, "upsampled": resolution > 32,
            "target_macs_factor": 2 ** phi, "macs_factor": macs / BASE_MACS, "baseline_macs": BASE_MACS,
            "baseline": BASELINE,
        },
    }
    if failed:
        record["error"] = "the training loss became nan in epoch 1"
    path = Path(root) / table / run_id / "record.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    return path


def write_comparison(root: Path, accuracy, *, phis=(1.0,), seeds=(0, 1, 2), epochs: int = 4, **fields) -> Path:
    """The baseline and the four families at each phi, for each seed; ``accuracy(family, phi,
    seed)`` gives each run's test accuracy (a fraction). Returns ``root``."""
    for seed in seeds:
        write_run(root, family="baseline", phi=0.0, seed=seed, accuracy=accuracy("baseline", 0.0, seed),
                  epochs=epochs, **fields)
        for phi in phis:
            for family in ("width", "depth", "resolution", "compound"):
                write_run(root, family=family, phi=phi, seed=seed, accuracy=accuracy(family, phi, seed),
                          epochs=epochs, seconds=100 * 2 ** phi * (1.6 if family == "depth" else 1.0), **fields)
    return Path(root)
