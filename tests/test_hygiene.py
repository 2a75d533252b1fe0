"""Notebook hygiene: every lesson is stored clean, names the "python3" kernel, holds no path
from the author's machine, and touches the internet only under an is_online() guard.

Each rule (tests/notebook_rules.py) runs on every notebook in notebooks/, and on a broken copy
of lesson 00 to show that it catches what it is meant to catch.
"""

import socket
import threading

import nbformat
import pytest

import notebook_rules as rules
from effnet_lab import settings

NOTEBOOKS, LESSON_00, broken_copy = rules.NOTEBOOKS, rules.LESSON_00, rules.broken_copy


@pytest.mark.parametrize("rule", rules.HYGIENE_RULES, ids=lambda rule: rule.__name__)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_follows_rule(path, rule):
    problems = rule(path)
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


def add_code(source: str):
    def change(notebook):
        notebook.cells.append(nbformat.v4.new_code_cell(source))

    return change


def add_markdown(text: str):
    def change(notebook):
        notebook.cells.append(nbformat.v4.new_markdown_cell(text))

    return change


def test_lesson_00_is_the_clean_starting_point(tmp_path):
    path = broken_copy(tmp_path, lambda notebook: None)
    assert all(rule(path) == [] for rule in rules.HYGIENE_RULES)


# --- stored clean -----------------------------------------------------------------------------


def with_output(notebook):
    notebook.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="device: cpu\n")]


def with_count(notebook):
    notebook.cells[2].execution_count = 3


def with_timestamps(notebook):
    notebook.cells[2].metadata["execution"] = {"iopub.status.busy": "2026-11-26T12:00:00Z"}


def with_widget_state(notebook):
    notebook.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}


@pytest.mark.parametrize(
    "change, words",
    [(with_output, "output"), (with_count, "execution count"), (with_timestamps, "timestamps"), (with_widget_state, "widget state")],
    ids=["output", "execution-count", "timestamps", "widget-state"],
)
def test_stored_clean_catches(tmp_path, change, words):
    problems = rules.check_stored_clean(broken_copy(tmp_path, change))
    assert len(problems) == 1 and words in problems[0], problems


# --- kernel -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["effnet-lab", "python3-venv", None])
def test_kernel_rule_catches(tmp_path, name):
    def change(notebook):
        if name is None:
            del notebook.metadata["kernelspec"]
        else:
            notebook.metadata.kernelspec.name = name

    problems = rules.check_kernel(broken_copy(tmp_path, change))
    assert problems and "kernelspec name" in problems[0]


# --- absolute paths -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        add_code('data = "/home/alice/cifar10"'),
        add_code('from pathlib import Path\nroot = Path("/content/drive/MyDrive/effnet_lab")'),
        add_code("x = 1  # the tar is in /work/shared/data"),
        add_code('path = r"C:\\Users\\bob\\cifar10"'),
        add_code('path = "D:/datasets/cifar10"'),
        add_markdown("Copy the data to `/Users/carol/data` first."),
        add_markdown("Put the archive in `C:\\data\\cifar` first."),
    ],
    ids=["home", "colab-content", "comment", "windows", "windows-slash", "markdown", "markdown-windows"],
)
def test_absolute_path_rule_catches(tmp_path, change):
    assert rules.check_no_absolute_paths(broken_copy(tmp_path, change))


@pytest.mark.parametrize(
    "change",
    [
        add_markdown("See [the paper](https://arxiv.org/abs/1905.11946) and https://example.org/home/x."),
        add_markdown(r"The constraint $\alpha \cdot \beta^2 \cdot \gamma^2 \approx 2$, with $d:\ \alpha^\phi$."),
        add_code('from effnet_lab import settings\nruns = settings.results_dir() / "lesson_00"\nspeed = "img/s"'),
    ],
    ids=["urls", "latex", "relative"],
)
def test_absolute_path_rule_allows(tmp_path, change):
    assert rules.check_no_absolute_paths(broken_copy(tmp_path, change)) == []


# --- internet only under a guard ----------------------------------------------------------------

UNGUARDED = {
    "dataset-download": 'import torchvision\ntrain = torchvision.datasets.CIFAR10("data", download=True)',
    "torchvision-weights": 'import torchvision\nmodel = torchvision.models.efficientnet_b0(weights="DEFAULT")',
    "weights-enum": "from torchvision.models import efficientnet_b0, EfficientNet_B0_Weights\nm = efficientnet_b0(weights=EfficientNet_B0_Weights.IMAGENET1K_V1)",
    "timm-pretrained": 'import timm\nmodel = timm.create_model("efficientnet_b0", pretrained=True)',
    "torch-hub": 'import torch\nmodel = torch.hub.load("pytorch/vision", "efficientnet_b0")',
    "urlopen": 'from urllib.request import urlopen\ndata = urlopen("https://example.org/x.csv").read()',
    "requests": 'import requests\ntable = requests.get(address).json()',
    "url-constant": 'import pandas as pd\ntable = pd.read_csv("https://example.org/results.csv")',
    "shell-wget": "!wget https://example.org/cifar.tar.gz",
    "pip-magic": "%pip install timm",
}


@pytest.mark.parametrize("source", UNGUARDED.values(), ids=UNGUARDED.keys())
def test_internet_rule_catches(tmp_path, source):
    problems = rules.check_internet_guarded(broken_copy(tmp_path, add_code(source)))
    assert problems and "is_online() guard" in problems[0], problems


GUARDED = {
    "if-is-online": (
        "import torchvision\nfrom effnet_lab import settings\n"
        'if settings.is_online():\n    train = torchvision.datasets.CIFAR10("data", download=True)\n'
        'else:\n    print("Offline: skipping the download")'
    ),
    "flag-variable": (
        "import torchvision, effnet_lab\nonline = effnet_lab.settings.is_online(timeout=2.0)\n"
        'weights = "DEFAULT" if online else None\n'
        "if online:\n    model = torchvision.models.efficientnet_b0(weights=weights)"
    ),
    "no-download": 'import torchvision\nmodel = torchvision.models.efficientnet_b0(weights=None)\ndata = torchvision.datasets.CIFAR10("data", download=False)',
    "numeric-weights": "import numpy as np\nmean = np.average([1.0, 2.0], weights=[3, 1])",
    "printed-url": 'print("The paper: https://arxiv.org/abs/1905.11946")\nprint(f"Code: {\'https://github.com/tensorflow/tpu\'}")',
    "effnet-pretrained": "import effnet_lab.pretrained as p\nlite0 = p.efficientnet_lite0(pretrained=True)  # from a pip package, not the network",
}


@pytest.mark.parametrize("source", GUARDED.values(), ids=GUARDED.keys())
def test_internet_rule_allows(tmp_path, source):
    assert rules.check_internet_guarded(broken_copy(tmp_path, add_code(source))) == []


def test_only_the_first_code_cell_may_install(tmp_path):
    def change(notebook):  # the install cell, pasted again further down, is not exempt
        notebook.cells.append(nbformat.v4.new_code_cell(notebook.cells[1].source))

    problems = rules.check_internet_guarded(broken_copy(tmp_path, change))
    assert problems and all("is_online() guard" in problem for problem in problems), problems


# --- the guard itself -----------------------------------------------------------------------------


@pytest.fixture
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield server.getsockname()[1]
    server.close()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens once the socket closes


def test_is_online_sees_a_server(listener, monkeypatch):
    monkeypatch.delenv(settings.OFFLINE_ENV, raising=False)
    settings._reachable.cache_clear()
    assert settings.is_online(timeout=5.0, host="127.0.0.1", port=listener)
    assert not settings.is_online(timeout=5.0, host="127.0.0.1", port=closed_port())


def test_is_online_caches_its_answer(listener, monkeypatch):
    monkeypatch.delenv(settings.OFFLINE_ENV, raising=False)
    settings._reachable.cache_clear()
    calls = []
    real = socket.create_connection
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: calls.append(a) or real(*a, **k))
    answers = [settings.is_online(timeout=5.0, host="127.0.0.1", port=listener) for _ in range(3)]
    assert answers == [True, True, True] and len(calls) == 1


def test_is_online_honours_the_offline_switch(listener, monkeypatch):
    monkeypatch.setenv(settings.OFFLINE_ENV, "1")
    settings._reachable.cache_clear()
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("tried the network"))
    assert settings.is_online(host="127.0.0.1", port=listener) is False


def test_is_online_does_not_wait_for_a_stuck_lookup(monkeypatch):
    """A name look-up that never returns (a broken resolver) is not waited for."""
    monkeypatch.delenv(settings.OFFLINE_ENV, raising=False)
    settings._reachable.cache_clear()
    release, finished = threading.Event(), threading.Event()

    def stuck(*args, **kwargs):
        release.wait(60)
        finished.set()
        raise OSError("released")

    monkeypatch.setattr(socket, "create_connection", stuck)
    try:
        assert settings.is_online(timeout=0.2, host="stuck.invalid") is False
        assert not finished.is_set()  # it answered while the look-up was still stuck
    finally:
        release.set()
        settings._reachable.cache_clear()


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), "2"])
def test_is_online_rejects_a_bad_timeout(timeout):
    with pytest.raises((ValueError, TypeError), match="timeout"):
        settings.is_online(timeout=timeout)
