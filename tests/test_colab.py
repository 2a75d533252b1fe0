"""Colab readiness: every lesson opens from its badge, installs the project on Colab (and only
there), offers SAVE_TO_DRIVE and never mounts Drive unless asked, and needs no file from the
repository around it.

The install cell really runs, in a fresh Python with every way of starting a program replaced
by a recorder that fails (so nothing is installed): outside Colab it must try nothing; in a
fake Colab (google.colab imported, or COLAB_RELEASE_TAG set) it must pip-install the project
from its repository. Each rule is also shown failing on a broken copy of lesson 00.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import notebook_rules as rules

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS, LESSON_00, broken_copy = rules.NOTEBOOKS, rules.LESSON_00, rules.broken_copy


@pytest.mark.parametrize("rule", rules.COLAB_RULES, ids=lambda rule: rule.__name__)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_follows_rule(path, rule):
    problems = rule(path)
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


def install_cell(notebook):
    return rules.code_cells(notebook)[0]


def set_install(source: str):
    def change(notebook):
        install_cell(notebook).source = source

    return change


# --- the badge ------------------------------------------------------------------------------------


def test_lesson_00_badge_and_install_cell_pass(tmp_path):
    path = broken_copy(tmp_path, lambda notebook: None)
    assert all(rule(path) == [] for rule in rules.COLAB_RULES)


def test_badge_rule_catches_a_missing_badge(tmp_path):
    def change(notebook):
        notebook.cells[0].source = "\n".join(
            line for line in notebook.cells[0].source.splitlines() if "colab-badge" not in line
        )

    assert "no Open in Colab badge" in rules.check_colab_badge(broken_copy(tmp_path, change))[0]


def test_badge_rule_catches_a_header_copied_without_its_link(tmp_path):
    # Lesson 00's header pasted into another lesson: the badge still opens lesson 00.
    path = broken_copy(tmp_path, lambda notebook: None, name="05_scaling_experiments_on_cifar.ipynb")
    problems = rules.check_colab_badge(path)
    assert problems and "notebooks/05_scaling_experiments_on_cifar.ipynb" in problems[0]


def test_badge_rule_catches_a_badge_that_is_not_first(tmp_path):
    def change(notebook):
        notebook.cells.insert(0, nbformat.v4.new_code_cell("import effnet_lab"))

    assert rules.check_colab_badge(broken_copy(tmp_path, change))


# --- the install cell -----------------------------------------------------------------------------


def test_the_real_install_cell_is_a_no_op_outside_colab_and_installs_on_colab():
    source = install_cell(nbformat.read(LESSON_00, as_version=4)).source
    outside = rules.run_install_cell(source, "outside")
    assert outside == {"calls": [], "error": None, "imported": []}
    for where in ("module", "env"):
        colab = rules.run_install_cell(source, where)
        assert [call for call in colab["calls"] if rules.installs_the_project(call)], colab


ALWAYS = 'import subprocess, sys\nsubprocess.run([sys.executable, "-m", "pip", "install", "effnet-lab @ git+https://github.com/effnet-lab/effnet-lab"], check=True)'
MODULE_ONLY = (
    'import subprocess, sys\nif "google.colab" in sys.modules:\n'
    '    subprocess.run([sys.executable, "-m", "pip", "install", "git+https://github.com/effnet-lab/effnet-lab"])'
)
ENV_ONLY = (
    'import os, subprocess, sys\nif "COLAB_RELEASE_TAG" in os.environ:\n'
    '    subprocess.run([sys.executable, "-m", "pip", "install", "git+https://github.com/effnet-lab/effnet-lab"])'
)
FROM_PYPI = (
    'import os, subprocess, sys\nif "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ:\n'
    '    subprocess.run([sys.executable, "-m", "pip", "install", "effnet-lab"])'
)
MAGIC = '# google.colab only\n%pip install "effnet-lab @ git+https://github.com/effnet-lab/effnet-lab"'
SHELL = 'import os, sys\nif "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ:\n    os.system("pip install git+https://github.com/effnet-lab/effnet-lab")\nimport effnet_lab'
BROKEN_INSTALL = {
    "installs-everywhere": (ALWAYS, "outside Colab the install cell runs"),
    "misses-colab-env": (MODULE_ONLY, "COLAB_RELEASE_TAG set"),
    "misses-colab-module": (ENV_ONLY, "google.colab imported"),
    "installs-from-pypi": (FROM_PYPI, "does not pip-install"),
    "ipython-magic": (MAGIC, "outside Colab the install cell fails"),
    "works-outside-colab": (SHELL, "outside Colab the install cell"),
}


@pytest.mark.parametrize("source, words", BROKEN_INSTALL.values(), ids=BROKEN_INSTALL.keys())
def test_install_rule_catches(tmp_path, source, words):
    problems = rules.check_install_cell(broken_copy(tmp_path, set_install(source)))
    assert any(words in problem for problem in problems), problems


def test_install_rule_catches_a_missing_install_cell(tmp_path):
    def change(notebook):
        notebook.cells.remove(install_cell(notebook))

    problems = rules.check_install_cell(broken_copy(tmp_path, change))
    assert problems and "not the Colab install cell" in problems[0]


# --- the set-up cell and Drive --------------------------------------------------------------------


def set_setup(old: str, new: str):
    def change(notebook):
        cell = rules.code_cells(notebook)[1]
        assert old in cell.source
        cell.source = cell.source.replace(old, new)

    return change


@pytest.mark.parametrize(
    "change, words",
    [
        (set_setup("SAVE_TO_DRIVE = False", "SAVE_TO_DRIVE = True"), "default to False"),
        (set_setup("SAVE_TO_DRIVE = False\n", ""), "does not offer SAVE_TO_DRIVE"),
        (set_setup("lesson.setup(quick=QUICK, save_to_drive=SAVE_TO_DRIVE)", "lesson.setup(quick=QUICK)"),
         "save_to_drive=SAVE_TO_DRIVE"),
        (set_setup("device = lesson.setup(quick=QUICK, save_to_drive=SAVE_TO_DRIVE)", 'device = "cpu"'),
         "does not call lesson.setup"),
        (set_setup("QUICK = None", "QUICK = True"), "QUICK must default to None"),
        (set_setup("QUICK = None\n", ""), "does not offer QUICK"),
        (set_setup("lesson.setup(quick=QUICK, ", "lesson.setup("), "quick=QUICK"),
    ],
    ids=["drive-on-by-default", "no-switch", "switch-not-passed", "no-setup", "quick-forced-by-default",
         "no-quick-switch", "quick-not-passed"],
)
def test_setup_rule_catches(tmp_path, change, words):
    problems = rules.check_setup_cell(broken_copy(tmp_path, change))
    assert any(words in problem for problem in problems), problems


@pytest.mark.parametrize(
    "source",
    ['from google.colab import drive\ndrive.mount("/content/drive")', "import google.colab.drive"],
    ids=["mount", "import"],
)
def test_drive_rule_catches(tmp_path, source):
    path = broken_copy(tmp_path, lambda notebook: notebook.cells.append(nbformat.v4.new_code_cell(source)))
    assert rules.check_no_drive_mount(path)


def test_repository_files_rule_catches(tmp_path):
    source = 'import pandas as pd\ntable = pd.read_csv("../results/scaling.csv")'
    path = broken_copy(tmp_path, lambda notebook: notebook.cells.append(nbformat.v4.new_code_cell(source)))
    assert "Colab does not have" in rules.check_no_repository_files(path)[0]


# --- lesson.setup() in a fake Colab ---------------------------------------------------------------

FAKE_COLAB = {
    "google/__init__.py": "",
    "google/colab/__init__.py": "",
    "google/colab/drive.py": (
        "import json, os\n"
        "def mount(mountpoint, **kwargs):\n"
        "    with open(os.environ['FAKE_DRIVE_LOG'], 'a') as log:\n"
        "        log.write(json.dumps(mountpoint) + '\\n')\n"
    ),
}
SETUP_BOTH_WAYS = """
import os, sys
from effnet_lab import lesson, settings
lesson.setup(save_to_drive=False)
print("DRIVE-MODULE-AFTER-FALSE", "google.colab.drive" in sys.modules)
print("RESULTS-AFTER-FALSE", settings.results_dir())
print("=== save_to_drive=True ===")
lesson.setup(save_to_drive=True)
print("RESULTS-AFTER-TRUE", settings.results_dir())
"""


def test_setup_on_colab_asks_for_a_gpu_and_mounts_drive_only_when_asked(tmp_path):
    for name, text in FAKE_COLAB.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    log = tmp_path / "mounts.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
        "FAKE_DRIVE_LOG": str(log),
        "COLAB_RELEASE_TAG": rules.COLAB_ENV["COLAB_RELEASE_TAG"],
        "CUDA_VISIBLE_DEVICES": "",  # a Colab runtime without a GPU
        "EFFNET_LAB_RESULTS": "",
    }
    result = subprocess.run(
        [sys.executable, "-c", SETUP_BOTH_WAYS], capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    asked_not, _, asked = result.stdout.partition("=== save_to_drive=True ===")
    assert "colab: yes" in asked_not
    assert "Runtime > Change runtime type" in asked_not  # how to turn a GPU on
    assert "DRIVE-MODULE-AFTER-FALSE False" in asked_not  # Drive was not even imported
    assert "/content/drive" not in asked_not
    mounts = [json.loads(line) for line in log.read_text().splitlines()]
    assert mounts == ["/content/drive"]  # once: after save_to_drive=True, not before
    assert "RESULTS-AFTER-TRUE /content/drive/MyDrive/effnet_lab/runs" in result.stdout
