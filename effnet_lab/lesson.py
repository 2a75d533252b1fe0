"""What the set-up cell of every lesson calls: where am I running, and with what?

``setup()`` prints a short report (Python, PyTorch, the device, Colab or not, quick mode,
where data and results live) and returns the device to use. On Colab without a GPU it
says how to turn one on; with ``save_to_drive=True`` it mounts Google Drive (Colab asks
for permission) and keeps results, checkpoints and the data cache there, so that a
disconnected runtime loses nothing.
"""

from __future__ import annotations

import os
import platform
import random
from pathlib import Path

import torch

from . import settings

DRIVE_FOLDER = "/content/drive/MyDrive/effnet_lab"


def use_drive(folder: str = DRIVE_FOLDER) -> Path:
    """Mount Google Drive (Colab only; Colab asks first) and keep results and cache there."""
    if not settings.in_colab():
        raise RuntimeError("save_to_drive works on Google Colab only; elsewhere set EFFNET_LAB_RESULTS")
    from google.colab import drive  # only importable on Colab

    drive.mount("/content/drive")
    root = Path(folder)
    os.environ[settings.RESULTS_ENV] = str(root / "runs")
    os.environ[settings.CACHE_ENV] = str(root / "data")
    return root


def environment_report(device: torch.device) -> dict[str, str]:
    """The facts the set-up cell prints, as a dictionary (also useful in bug reports)."""
    report = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": settings.device_name(device),
        "colab": "yes" if settings.in_colab() else "no",
        "quick mode": "on (small and fast: numbers are for illustration only)"
        if settings.quick_mode()
        else f"off (set {settings.QUICK_ENV}=1 for a fast run on a CPU)",
        "data source": settings.data_source() or "found automatically (see effnet_lab.data)",
        "data cache": str(settings.cache_dir()),
        "results": str(settings.results_dir()),
    }
    return report


def setup(seed: int = 0, save_to_drive: bool = False) -> torch.device:
    """Seed everything, describe the environment, and return the device to use."""
    if save_to_drive:
        use_drive()
    random.seed(seed)
    torch.manual_seed(seed)
    device = settings.default_device()
    for key, value in environment_report(device).items():
        print(f"{key:>12}: {value}")
    if device.type == "cpu":
        if settings.in_colab():
            print("\nNo GPU. On Colab: Runtime > Change runtime type > T4 GPU (or better), then rerun.")
        else:
            print("\nNo GPU found: everything runs on the CPU. Quick mode keeps the lessons fast.")
    return device
