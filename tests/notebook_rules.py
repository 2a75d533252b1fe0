"""The rules every lesson notebook follows, as checks that return a list of problems.

Each check takes the path of a notebook and returns human-readable problems (empty when the
notebook follows the rule). tests/test_hygiene.py and tests/test_colab.py apply them to the
real notebooks, and to deliberately broken copies to show that each rule can fail.

Hygiene: stored without outputs, kernel "python3", no absolute paths, no unguarded internet.
Colab: the badge, the install cell (a no-op outside Colab), the set-up cell, no Drive mount.

The internet guard convention: a cell that downloads (``download=True``, ``weights="DEFAULT"``,
``timm.create_model(..., pretrained=True)``, ``torch.hub``, ``urlopen``, ``requests.``, an
http(s) URL, ``!wget``/``!curl``/``!pip install``) does it under an ``if`` that asks
``effnet_lab.settings.is_online()``, directly or through a variable set from it::

    if settings.is_online():
        weights = torchvision.models.EfficientNet_B0_Weights.DEFAULT
    else:
        print("Offline: using random weights (the numbers below will differ).")

Only the Colab install cell (the first code cell) may use the network unguarded: it runs on
Colab only, where there is a network.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

REPOSITORY = "https://github.com/effnet-lab/effnet-lab"
COLAB_URL = "https://colab.research.google.com/github/effnet-lab/effnet-lab/blob/main/notebooks/{name}"
BADGE_IMAGE = "https://colab.research.google.com/assets/colab-badge.svg"
KERNEL = "python3"


def load(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def code_cells(notebook) -> list:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def python_source(source: str) -> str:
    """A cell's source as plain Python: IPython's ``!cmd`` and ``%magic`` become calls."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


def parse(source: str) -> ast.Module | None:
    try:
        return ast.parse(python_source(source))
    except SyntaxError:
        return None


def is_install_cell(cell) -> bool:
    """The cell meant to install the project on Colab (whether or not it does it right)."""
    markers = ("google.colab", "COLAB_RELEASE_TAG", "git+" + REPOSITORY)
    return cell.cell_type == "code" and any(marker in cell.source for marker in markers)


def label(index: int, cell) -> str:
    first = cell.source.strip().splitlines()[0][:60] if cell.source.strip() else "(empty)"
    return f"cell {index} ({cell.cell_type}: {first!r})"


# --- hygiene -----------------------------------------------------------------------------


def check_stored_clean(path: Path) -> list[str]:
    """No outputs, no execution counts, no execution timestamps, no saved widget state."""
    notebook = load(path)
    problems = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        if cell.get("outputs"):
            problems.append(f"{label(index, cell)} is stored with {len(cell.outputs)} output(s)")
        if cell.get("execution_count") is not None:
            problems.append(f"{label(index, cell)} is stored with execution count {cell.execution_count}")
        if "execution" in cell.get("metadata", {}):
            problems.append(f"{label(index, cell)} is stored with execution timestamps (metadata.execution)")
    if "widgets" in notebook.metadata:
        problems.append("the notebook is stored with widget state (metadata.widgets)")
    return problems


def check_kernel(path: Path) -> list[str]:
    """The kernel every lesson names: "python3" (the project's environment, or Colab's)."""
    metadata = load(path).metadata
    spec = metadata.get("kernelspec", {})
    problems = []
    if spec.get("name") != KERNEL:
        problems.append(f"kernelspec name is {spec.get('name')!r}, not {KERNEL!r}")
    if spec.get("language", "python") != "python" or metadata.get("language_info", {}).get("name", "python") != "python":
        problems.append("the notebook's language is not python")
    return problems


URL = re.compile(r"[a-z][a-z0-9+.-]*://[^\s)\"'>\]]+", re.IGNORECASE)
MATH = re.compile(r"\$\$.*?\$\$|\$[^$\n]*\$", re.DOTALL)
# Folders that exist on one person's machine (or one cloud's), never on a student's.
MACHINE_PATH = re.compile(r"(?<![\w.~/-])/(?:home|Users|root|work|mnt|tmp|scratch|content|opt|srv)/")
WINDOWS_PATH = re.compile(r"(?<![\w\\])[A-Za-z]:\\\\?[\w .-]")
ABSOLUTE_STRING = re.compile(r"^(?:/[A-Za-z][\w.-]*/|[A-Za-z]:[\\/])")


def check_no_absolute_paths(path: Path) -> list[str]:
    """No path that exists only on the author's machine: in prose, code or comments."""
    problems = []
    for index, cell in enumerate(load(path).cells):
        text = URL.sub("", cell.source)
        if cell.cell_type == "markdown":
            text = MATH.sub("", text)
        for pattern in (MACHINE_PATH, WINDOWS_PATH):
            for match in pattern.finditer(text):
                line = text[: match.start()].count("\n")
                problems.append(f"{label(index, cell)} line {line + 1}: absolute path {text.splitlines()[line].strip()!r}")
        tree = parse(cell.source) if cell.cell_type == "code" else None
        for node in ast.walk(tree) if tree else ():
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and ABSOLUTE_STRING.match(node.value):
                problems.append(f"{label(index, cell)}: absolute path {node.value!r}")
    return sorted(set(problems))


NETWORK_NAMES = {
    "urlopen", "urlretrieve", "load_state_dict_from_url", "download_url",
    "download_and_extract_archive", "hf_hub_download", "snapshot_download",
}
SHELL_DOWNLOAD = re.compile(r"\b(?:wget|curl|git\s+clone|pip\s+install|conda\s+install|apt(?:-get)?\s+install)\b")
SHOWS_ONLY = {"print", "Markdown"}  # a URL printed for the reader is not a download


def dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Call):
        return dotted(node.func) + "()"
    return ""


def assigned_values(tree: ast.Module, name: str) -> list[ast.expr]:
    """The values assigned to the variable ``name`` anywhere in ``tree``."""
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)]


def network_uses(tree: ast.Module):
    """(node, what) for everything in a cell that needs the internet."""
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword):
            value = node.value
            if node.arg == "download" and not (isinstance(value, ast.Constant) and not value.value):
                yield node, f"download={ast.unparse(value)}"
            # torchvision's pretrained weights: weights="DEFAULT" or EfficientNet_B0_Weights.X
            # (not numpy's or matplotlib's weights=array).
            if node.arg == "weights" and (
                (isinstance(value, ast.Constant) and isinstance(value.value, str)) or "Weights" in dotted(value)
            ):
                yield node, f"weights={ast.unparse(value)}"
        elif isinstance(node, ast.Call):
            name = dotted(node.func)
            if name.startswith("timm.") and any(
                k.arg == "pretrained" and not (isinstance(k.value, ast.Constant) and not k.value) for k in node.keywords
            ):
                yield node, f"{name}(pretrained=...)"
            shell = "get_ipython" in name and name.split(".")[-1] in {"system", "getoutput", "run_line_magic", "run_cell_magic"}
            if shell or name.startswith(("subprocess.", "os.system", "os.popen")):
                words = [
                    part.value
                    for arg in node.args
                    for part in ast.walk(arg)
                    if isinstance(part, ast.Constant) and isinstance(part.value, str)
                ]
                text = " ".join(words)
                magic = shell and name.endswith("run_line_magic") and words[:1] in (["pip"], ["conda"])
                if SHELL_DOWNLOAD.search(text) or magic or ("pip" in text and "install" in words):
                    yield node, f"runs {text[:60]!r}"
        elif isinstance(node, (ast.Name, ast.Attribute)):
            name = dotted(node)
            last = name.split(".")[-1]
            if last in NETWORK_NAMES or name.startswith("requests.") or name.startswith("torch.hub"):
                yield node, name
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and re.search(r"https?://", node.value):
            yield node, f"URL {node.value.strip()[:60]!r}"


def parents(tree: ast.Module) -> dict[ast.AST, ast.AST]:
    return {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}


def calls_is_online(node: ast.AST, flags: set[str]) -> bool:
    for inner in ast.walk(node):
        if isinstance(inner, ast.Call) and dotted(inner.func).split(".")[-1] == "is_online":
            return True
        if isinstance(inner, ast.Name) and inner.id in flags:
            return True
    return False


def guarded(node: ast.AST, up: dict, flags: set[str]) -> bool:
    """True when ``node`` sits under an ``if``/``while``/``x if c else y`` that asks is_online()."""
    child, parent = node, up.get(node)
    while parent is not None:
        if isinstance(parent, (ast.If, ast.While, ast.IfExp)) and child is not parent.test:
            if calls_is_online(parent.test, flags):
                return True
        child, parent = parent, up.get(parent)
    return False


def shown_only(node: ast.AST, up: dict) -> bool:
    """A URL that is only printed or shown as text."""
    parent = up.get(node)
    while isinstance(parent, (ast.JoinedStr, ast.FormattedValue, ast.BinOp)):
        parent = up.get(parent)
    return isinstance(parent, ast.Call) and dotted(parent.func).split(".")[-1] in SHOWS_ONLY


def check_internet_guarded(path: Path) -> list[str]:
    """Every use of the network, outside the Colab install cell, sits under is_online()."""
    notebook = load(path)
    problems = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code" or (cell is code_cells(notebook)[0] and is_install_cell(cell)):
            continue
        tree = parse(cell.source)
        if tree is None:
            problems.append(f"{label(index, cell)} is not valid Python: cannot check it")
            continue
        up = parents(tree)
        # Names that hold is_online()'s answer: `online = settings.is_online()`, then `if online:`.
        flags = {
            target.id
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign) and calls_is_online(node.value, set())
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        for node, what in network_uses(tree):
            if what.startswith("URL") and shown_only(node, up):
                continue
            if not guarded(node, up, flags):
                problems.append(f"{label(index, cell)} needs the internet without an is_online() guard: {what}")
    return sorted(set(problems))


HYGIENE_RULES = (check_stored_clean, check_kernel, check_no_absolute_paths, check_internet_guarded)


# --- Colab -------------------------------------------------------------------------------


MARKDOWN_LINK = re.compile(r"\[!\[[^\]]*\]\(([^)\s]+)\)\]\(([^)\s]+)\)")


def check_colab_badge(path: Path) -> list[str]:
    """The first cell is markdown with an "Open in Colab" badge linking to this very file."""
    notebook = load(path)
    if not notebook.cells or notebook.cells[0].cell_type != "markdown":
        return ["the first cell is not the markdown title with the Colab badge"]
    expected = COLAB_URL.format(name=path.name)
    links = MARKDOWN_LINK.findall(notebook.cells[0].source)
    badges = [target for image, target in links if image == BADGE_IMAGE]
    if not badges:
        return ["the first cell has no Open in Colab badge ([![Open In Colab](...colab-badge.svg)](link))"]
    return [f"the Colab badge links to {target}, not {expected}" for target in badges if target != expected]


# Runs a cell's source with every way of starting a program replaced by a recorder that
# fails (nothing is installed), optionally inside a fake Colab: prints what it tried to run.
DRIVER = r"""
import json, os, subprocess, sys, types

calls = []

class Blocked(Exception):
    pass

def recorder(kind):
    def run(*args, **kwargs):
        command = args[0] if args else kwargs.get("args")
        calls.append([kind, [str(part) for part in command] if isinstance(command, (list, tuple)) else str(command)])
        raise Blocked(kind + " is blocked by the test")
    return run

subprocess.Popen = recorder("subprocess")
os.system = recorder("os.system")
os.popen = recorder("os.popen")
for name in ("execv", "execve", "execvp", "execvpe", "spawnv", "spawnve", "posix_spawn", "posix_spawnp"):
    if hasattr(os, name):
        setattr(os, name, recorder("os." + name))
if sys.argv[1] == "module":  # what Colab's runtime has imported before any cell runs
    google = types.ModuleType("google")
    google.colab = types.ModuleType("google.colab")
    google.__path__ = []
    sys.modules.update({"google": google, "google.colab": google.colab})
error = None
try:
    exec(compile(open(sys.argv[2]).read(), "<install cell>", "exec"), {"__name__": "__main__"})
except Blocked:
    pass
except BaseException as exc:
    error = f"{type(exc).__name__}: {exc}"
print(json.dumps({"calls": calls, "error": error, "imported": sorted(m for m in sys.modules if m.startswith("effnet_lab"))}))
"""

COLAB_ENV = {"COLAB_RELEASE_TAG": "release-colab_20260101-060000_RC00"}


def run_install_cell(source: str, where: str) -> dict:
    """Execute an install cell in a fresh Python: ``where`` is "outside" (this machine),
    "module" (google.colab imported, as on Colab) or "env" (Colab's environment variable)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLAB_")}
    if where == "env":
        env.update(COLAB_ENV)
    with tempfile.TemporaryDirectory() as folder:
        cell = Path(folder) / "cell.py"
        cell.write_text(source)
        result = subprocess.run(
            [sys.executable, "-c", DRIVER, "module" if where == "module" else "plain", str(cell)],
            capture_output=True, text=True, env=env, cwd=folder, timeout=120,
        )
    if result.returncode != 0:
        return {"calls": [], "error": f"the driver failed: {result.stderr[-500:]}", "imported": []}
    return json.loads(result.stdout.strip().splitlines()[-1])


def installs_the_project(call) -> bool:
    kind, command = call
    words = command if isinstance(command, list) else command.split()
    return "install" in words and any(word.startswith("pip") or word.endswith("pip") for word in words) and any(
        "git+" + REPOSITORY in word for word in words
    )


def check_install_cell(path: Path) -> list[str]:
    """The first code cell installs the project on Colab (either way Colab is detected) and
    does nothing at all anywhere else."""
    cells = code_cells(load(path))
    if not cells or not is_install_cell(cells[0]):
        return ["the first code cell is not the Colab install cell (copy it from 00_setup_and_tour)"]
    source = cells[0].source
    problems = []
    if "get_ipython" in python_source(source) and "get_ipython" not in source:
        problems.append("the install cell uses IPython magics: it must be plain Python")
    outside = run_install_cell(source, "outside")
    if outside["error"]:
        problems.append(f"outside Colab the install cell fails: {outside['error']}")
    if outside["calls"]:
        problems.append(f"outside Colab the install cell runs {outside['calls']}")
    if outside["imported"]:
        problems.append(f"outside Colab the install cell imports {outside['imported']}")
    for where, how in (("module", "google.colab imported"), ("env", "COLAB_RELEASE_TAG set")):
        colab = run_install_cell(source, where)
        if not any(installs_the_project(call) for call in colab["calls"]):
            problems.append(
                f"on Colab ({how}) the install cell does not pip-install git+{REPOSITORY}: "
                f"it ran {colab['calls']}, error {colab['error']}"
            )
    return problems


def check_setup_cell(path: Path) -> list[str]:
    """The second code cell offers QUICK = None and SAVE_TO_DRIVE = False and passes both to
    lesson.setup(quick=QUICK, save_to_drive=SAVE_TO_DRIVE)."""
    cells = code_cells(load(path))
    if len(cells) < 2:
        return ["there is no set-up cell after the install cell"]
    tree = parse(cells[1].source)
    if tree is None:
        return ["the set-up cell is not valid Python"]
    problems = []
    assignments = assigned_values(tree, "SAVE_TO_DRIVE")
    if not assignments:
        problems.append("the set-up cell does not offer SAVE_TO_DRIVE")
    elif not all(isinstance(v, ast.Constant) and v.value is False for v in assignments):
        problems.append("SAVE_TO_DRIVE must default to False (Drive is mounted only when the student asks)")
    quick = assigned_values(tree, "QUICK")
    if not quick:
        problems.append("the set-up cell does not offer QUICK (None: quick mode exactly when there is no GPU)")
    elif not all(isinstance(v, ast.Constant) and v.value is None for v in quick):
        problems.append("QUICK must default to None (quick mode exactly when there is no GPU)")
    setups = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and dotted(node.func).split(".")[-1] == "setup" and "lesson" in dotted(node.func)
    ]
    if not setups:
        problems.append("the set-up cell does not call lesson.setup()")
    elif not any(
        k.arg == "save_to_drive" and isinstance(k.value, ast.Name) and k.value.id == "SAVE_TO_DRIVE"
        for call in setups
        for k in call.keywords
    ):
        problems.append("lesson.setup() is not given save_to_drive=SAVE_TO_DRIVE")
    if setups and not any(
        k.arg == "quick" and isinstance(k.value, ast.Name) and k.value.id == "QUICK" for call in setups for k in call.keywords
    ):
        problems.append("lesson.setup() is not given quick=QUICK")
    return problems


def check_no_drive_mount(path: Path) -> list[str]:
    """Only lesson.setup(save_to_drive=True) mounts Google Drive: no cell does it itself."""
    problems = []
    for index, cell in enumerate(load(path).cells):
        if cell.cell_type != "code":
            continue
        if re.search(r"\bdrive\s*\.\s*mount\b|flush_and_unmount", cell.source):
            problems.append(f"{label(index, cell)} mounts Google Drive itself (use SAVE_TO_DRIVE)")
        if re.search(r"from\s+google\.colab\s+import\s+drive|import\s+google\.colab\.drive", cell.source):
            problems.append(f"{label(index, cell)} imports google.colab.drive")
    return problems


def check_no_repository_files(path: Path) -> list[str]:
    """No relative path out of notebooks/ (``../results``): on Colab the notebook runs alone,
    without the repository around it."""
    problems = []
    for index, cell in enumerate(load(path).cells):
        tree = parse(cell.source) if cell.cell_type == "code" else None
        for node in ast.walk(tree) if tree else ():
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.match(r"^\.\.[\\/]", node.value):
                problems.append(f"{label(index, cell)}: reads {node.value!r}, which Colab does not have")
    return problems


COLAB_RULES = (check_colab_badge, check_install_cell, check_setup_cell, check_no_drive_mount, check_no_repository_files)


# --- for the tests: the notebooks, and broken copies of lesson 00 -------------------------

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
LESSON_00 = Path(__file__).resolve().parent.parent / "notebooks" / "00_setup_and_tour.ipynb"


def broken_copy(tmp_path, change, name="00_setup_and_tour.ipynb") -> Path:
    """Lesson 00, changed by ``change(notebook)``, saved in tmp_path."""
    notebook = nbformat.read(LESSON_00, as_version=4)
    change(notebook)
    path = tmp_path / name
    nbformat.write(notebook, path)
    return path
