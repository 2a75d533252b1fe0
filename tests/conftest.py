"""Shared fixtures: the real CIFAR-10, decoded at most once per test run.

When ``EFFNET_LAB_DATA`` is unset, the tests (and every subprocess they start) use the
shared copy next to the project, ``../shared/data/cifar10-jpeg.tar.gz``, when it is there.
The decoded cache goes where ``effnet_lab.settings.cache_dir()`` says (the project's
``data/`` unless ``EFFNET_LAB_CACHE`` moves it): a fresh CI checkout decodes the 60,000
JPEGs once, the first time a test needs them; every later load reads the cache.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR10 = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"

if not os.environ.get("EFFNET_LAB_DATA", "").strip() and SHARED_CIFAR10.is_file():
    os.environ["EFFNET_LAB_DATA"] = str(SHARED_CIFAR10)


@pytest.fixture(scope="session")
def cifar10():
    """The real CIFAR-10 (a ``CifarData``); the test is skipped when no copy is at hand."""
    from effnet_lab.data import load_cifar

    try:
        return load_cifar("cifar10", progress=False, download=False)
    except FileNotFoundError as error:
        pytest.skip(f"CIFAR-10 is not available here ({error}); set EFFNET_LAB_DATA")


@pytest.fixture
def one_thread():
    """One CPU thread for the test. Small networks and tensors run as fast on one thread as on
    several, and on a busy machine far faster, as no thread waits for another (on a loaded
    2-core machine: 100 NAS controller steps took 44 s with two threads, 1.7 s with one)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

