"""A run folder and its record: what a finished run says about itself (lesson 05).

A run folder holds ``checkpoint.pt`` while the run trains and ``record.json`` once it has
finished. The record is the unit everything downstream consumes (sweeps, results, plots,
lessons): the test accuracy after every epoch, the time it took, the images per second, the
peak memory, and everything needed to say how the number was made (configuration, model,
data copy, device, software, commit, date, command).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import resource
import sys
from pathlib import Path

import torch
from torch import nn

from . import settings
from .optim import PRECISION_NAMES

CHECKPOINT_FILE, RECORD_FILE = "checkpoint.pt", "record.json"  # in a run folder


def run_folder_state(run_dir: str | os.PathLike) -> str:
    """What ``train`` does with ``run_dir``: "finished" (its record, written after the last
    epoch, is given back at once; the checkpoint need not be there), "started" (training
    resumes from the checkpoint) or "new"."""
    run_dir = Path(run_dir)
    if (run_dir / RECORD_FILE).exists():
        return "finished"
    return "started" if (run_dir / CHECKPOINT_FILE).exists() else "new"



def describe_model(model: nn.Module, spec: dict | None = None) -> dict:
    """What the record says about the model: the spec it was built from, and its configuration."""
    description = {"class": type(model).__name__}
    if spec:
        description["spec"] = dict(spec)
    config = getattr(model, "config", None)
    if dataclasses.is_dataclass(config):
        description["config"] = dataclasses.asdict(config)
    return description


def peak_memory(device: torch.device) -> tuple[int, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "torch.cuda.max_memory_allocated"
    # Linux reports kilobytes, macOS bytes.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak * (1 if sys.platform == "darwin" else 1024), "process peak resident memory (ru_maxrss)"


def make_record(model, config, data, device, processes, accuracy, curve, totals, resume_count,
            peak, peak_measure, description, command, precision, channels_last) -> dict:
    from . import __version__
    from .profile import count_macs, count_params

    try:  # counted on a meta-device copy: the real weights stay where they are
        macs = count_macs(model, config.resolution)
    except Exception:  # an exotic module the flop counter cannot trace
        macs = None
    test_set = (f"stratified subset: {config.test_per_class} per class ({len(data.test_labels)} images)"
                if config.test_per_class else f"full test set ({len(data.test_labels)} images)")
    return {
        "status": "complete",
        "test_accuracy": accuracy,
        "test_set": test_set,
        "train_seconds": round(totals["seconds"], 3),
        "images_per_second": totals["images"] / totals["step_seconds"] if totals["step_seconds"] else None,
        "peak_memory_bytes": peak,
        "peak_memory_measure": peak_measure,
        "device": settings.device_name(device) + (f" x {processes.world_size} processes" if processes.world_size > 1 else ""),
        "world_size": processes.world_size,
        "params": count_params(model),
        "macs": macs,
        "resolution": config.resolution,
        "epochs": config.epochs,
        "seed": config.seed,
        "dataset": config.dataset,
        "data_source": data.source,
        "train_images": len(data.train_labels),
        "test_images": len(data.test_labels),
        "precision": PRECISION_NAMES[precision],
        "memory_format": "channels_last" if channels_last else "contiguous (NCHW)",
        "git_commit": settings.git_commit(),
        "effnet_lab_version": __version__,
        "torch_version": torch.__version__,
        "resumed": resume_count > 0,
        "resume_count": resume_count,
        "quick_mode": config.quick,
        "accuracy_curve": curve,
        "config": config.to_dict(),
        "model": description,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
    }
