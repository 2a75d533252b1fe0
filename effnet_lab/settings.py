"""The project's switches, read in one place.

Every part of effnet_lab (the notebooks, the training engine, the sweeps, the tests) asks
this module, and nothing else, about the environment:

- ``EFFNET_LAB_QUICK=1``: quick mode. Small subsets, one or two epochs, tiny sweeps: enough
  to run every lesson top to bottom on a laptop CPU (or in CI) in minutes. The numbers it
  gives are meaningless as results; everything that shows them says "quick mode".
- ``EFFNET_LAB_DATA``: where the dataset comes from (a folder, a ``.tar.gz`` of an image
  folder, or the folder holding torchvision's official download).
- ``EFFNET_LAB_CACHE``: where decoded datasets are cached (default: the project's ``data/``
  folder in a checkout, otherwise ``~/.cache/effnet_lab``).
- ``EFFNET_LAB_RESULTS``: where runs, checkpoints and sweep tables are written (default:
  ``runs/`` in a checkout, otherwise ``~/effnet_lab_runs``). On Colab, point it at a mounted
  Drive folder to survive disconnects.
- ``EFFNET_LAB_SHIPPED``: the folder of results that ship with the project, which the
  lessons plot (default: the checkout's ``results/``; the tests point it at results made on the spot).
- ``EFFNET_LAB_OFFLINE=1``: never try the internet (``is_online()`` answers False at once).
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import threading
from functools import lru_cache
from pathlib import Path

import torch

from .checks import check_int, check_number

QUICK_ENV = "EFFNET_LAB_QUICK"
DATA_ENV = "EFFNET_LAB_DATA"
CACHE_ENV = "EFFNET_LAB_CACHE"
RESULTS_ENV = "EFFNET_LAB_RESULTS"
SHIPPED_ENV = "EFFNET_LAB_SHIPPED"
OFFLINE_ENV = "EFFNET_LAB_OFFLINE"
# Where the downloads a lesson might want come from (torchvision's weights and datasets).
ONLINE_PROBE = ("download.pytorch.org", 443)

_TRUE = {"1", "true", "yes", "on"}


def quick_mode(override: bool | None = None) -> bool:
    """True when quick mode is on: ``override`` if given, else ``EFFNET_LAB_QUICK``."""
    if override is not None:
        return bool(override)
    return os.environ.get(QUICK_ENV, "").strip().lower() in _TRUE


@lru_cache(maxsize=None)
def project_root() -> Path | None:
    """The checkout this package runs from (the folder holding ``pyproject.toml``), if any."""
    candidate = Path(__file__).resolve().parent.parent
    if (candidate / "pyproject.toml").is_file() and (candidate / "effnet_lab").is_dir():
        return candidate
    return None


def data_source() -> str | None:
    """The dataset location named by ``EFFNET_LAB_DATA``, or None."""
    value = os.environ.get(DATA_ENV, "").strip()
    return value or None


def cache_dir() -> Path:
    """Folder for decoded dataset caches (created on demand by whoever writes there)."""
    value = os.environ.get(CACHE_ENV, "").strip()
    if value:
        return Path(value).expanduser()
    root = project_root()
    if root is not None:
        return root / "data"
    return Path.home() / ".cache" / "effnet_lab"


def results_dir() -> Path:
    """Folder for run records, checkpoints and sweep tables."""
    value = os.environ.get(RESULTS_ENV, "").strip()
    if value:
        return Path(value).expanduser()
    root = project_root()
    if root is not None:
        return root / "runs"
    return Path.home() / "effnet_lab_runs"


def shipped_results_dir() -> Path | None:
    """The results that ship with the project (measured, with provenance), which the lessons
    plot: the checkout's ``results/``, or None where the package runs without the project."""
    value = os.environ.get(SHIPPED_ENV, "").strip()
    if value:
        return Path(value).expanduser()
    root = project_root()
    return root / "results" if root is not None else None


def default_device() -> torch.device:
    """The GPU when there is one, else the CPU (Apple's MPS is not used: too many gaps)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_name(device: torch.device | str | None = None) -> str:
    """A human-readable name for a device, such as 'NVIDIA H100 80GB HBM3' or 'cpu (2 threads)'."""
    device = torch.device(device) if device is not None else default_device()
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def cpu_name() -> str:
    """The processor's model name (from /proc/cpuinfo on Linux), for benchmark records."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    """The commit of the checkout this package runs from (with '+dirty' for local changes)."""
    root = project_root()
    if root is None:
        return None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        if not commit:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, timeout=5,
        ).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def in_colab() -> bool:
    """True inside a Google Colab runtime."""
    try:
        import google.colab  # noqa: F401  (only importable on Colab)
    except ImportError:
        return False
    return True


def is_online(timeout: float = 2.0, host: str = ONLINE_PROBE[0], port: int = ONLINE_PROBE[1]) -> bool:
    """True when ``host`` accepts a connection within ``timeout`` seconds.

    The guard for every notebook cell that needs the internet (a download, a URL): such a
    cell runs its download under ``if settings.is_online():`` and otherwise says what to do
    instead, so that a lesson never hangs or fails on an offline machine. The answer is
    cached per host (a lesson asks many times; restart the kernel after going online), and
    ``EFFNET_LAB_OFFLINE=1`` answers False without trying.
    """
    timeout = check_number("timeout", timeout, exclusive_minimum=0.0)
    port = check_int("port", port, minimum=1)
    if os.environ.get(OFFLINE_ENV, "").strip().lower() in _TRUE:
        return False
    return _reachable(str(host), port, timeout)


@lru_cache(maxsize=None)
def _reachable(host: str, port: int, timeout: float) -> bool:
    done, answer = threading.Event(), []

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                answer.append(True)
        except OSError:
            pass
        finally:
            done.set()

    # A daemon thread: the socket timeout does not cover the DNS look-up, which can hang on
    # a broken network; this wait does, and a stuck look-up is left behind, not waited for.
    threading.Thread(target=connect, daemon=True, name="effnet_lab.is_online").start()
    done.wait(timeout)
    return bool(answer)
