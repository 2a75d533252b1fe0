"""What the set-up cell of every lesson calls: where am I running, and with what?

``setup()`` decides quick mode (``resolve_quick``: the one place that does), prints a short
report (Python, PyTorch, the device, Colab or not, quick mode and why, where data and
results live) and returns the device to use. On Colab without a GPU it
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


def resolve_quick(quick: bool | None = None) -> tuple[bool, str]:
    """Whether the lesson runs in quick mode, and why, from three sources in this order:

    1. ``EFFNET_LAB_QUICK`` when the environment sets it (a test, a script, a class's
       launcher), unless the value is the one an earlier ``setup()`` wrote itself;
    2. ``quick`` (the set-up cell's ``QUICK``) when it is True or False;
    3. otherwise on exactly when no CUDA GPU is found.
    """
    if quick is not None and not isinstance(quick, bool):
        raise TypeError(f"QUICK must be None, True or False, got {quick!r}")
    value = os.environ.get(settings.QUICK_ENV, "").strip()
    if value and value != _written_by_setup.get("value"):
        return settings.quick_mode(), f"{settings.QUICK_ENV}={value} is set in the environment"
    if quick is not None:
        return quick, f"QUICK = {quick} in the set-up cell"
    if torch.cuda.is_available():
        return False, "a CUDA GPU was found (QUICK = None)"
    return True, "no CUDA GPU was found (QUICK = None)"


# What the last setup() wrote into EFFNET_LAB_QUICK: rerunning the set-up cell with another
# QUICK must change the mode, not find its own earlier answer and take it for the user's.
_written_by_setup: dict[str, str] = {}


def apply_quick(quick: bool | None = None) -> tuple[bool, str]:
    """Resolve quick mode and write it to ``EFFNET_LAB_QUICK`` ("1" or "0"), so that
    ``settings.quick_mode()``, the one reader, agrees everywhere afterwards."""
    on, reason = resolve_quick(quick)
    value = "1" if on else "0"
    os.environ[settings.QUICK_ENV] = value
    _written_by_setup["value"] = value
    return on, reason


def environment_report(device: torch.device) -> dict[str, str]:
    """The facts the set-up cell prints, as a dictionary (also useful in bug reports)."""
    report = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": settings.device_name(device),
        "colab": "yes" if settings.in_colab() else "no",
        "quick mode": "on (small and fast: numbers are for illustration only)"
        if settings.quick_mode()
        else "off (full scale: QUICK = True in the set-up cell makes it small and fast)",
        "data source": settings.data_source() or "found automatically (see effnet_lab.data)",
        "data cache": str(settings.cache_dir()),
        "results": str(settings.results_dir()),
    }
    return report


def setup(quick: bool | None = None, save_to_drive: bool = False, seed: int = 0) -> torch.device:
    """Decide quick mode, seed everything, describe the environment, return the device to use.

    ``quick``: None (quick mode exactly when there is no CUDA GPU), True or False to force
    it; ``EFFNET_LAB_QUICK``, when the environment sets it, wins over both (see
    ``resolve_quick``).
    """
    on, reason = apply_quick(quick)
    if save_to_drive:
        use_drive()
    random.seed(seed)
    torch.manual_seed(seed)
    device = settings.default_device()
    for key, value in environment_report(device).items():
        print(f"{key:>12}: {value}")
    print(f"{'':>12}  quick mode is {'on' if on else 'off'} because {reason}")
    if device.type == "cpu":
        if settings.in_colab():
            print("\nNo GPU. On Colab: Runtime > Change runtime type > T4 GPU (or better), then rerun.")
        else:
            print("\nNo GPU found: everything runs on the CPU. Quick mode keeps the lessons fast.")
    return device


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(5, round(seconds / 5) * 5):.0f} s"
    return f"{round(seconds / 60):.0f} min"


def announce(what: str, *, quick_s: float, full_s: float) -> None:
    """Say what a long cell is about to do and about how long it takes, before it starts.

    ``quick_s``: seconds in quick mode on a 2-core laptop CPU (measured); ``full_s``:
    seconds at full scale on a Colab T4-class GPU (estimated). A full-scale run without a
    GPU is told that it will take far longer.
    """
    if settings.quick_mode():
        estimate = f"about {_duration(quick_s)} in quick mode on a 2-core CPU"
    elif torch.cuda.is_available():
        estimate = f"about {_duration(full_s)} at full scale on a T4-class GPU (less on a larger one)"
    else:
        estimate = (f"about {_duration(full_s)} at full scale on a T4-class GPU; without a GPU many times "
                    "longer (set QUICK = True in the set-up cell for a fast run)")
    print(f"{what}: {estimate}.")
