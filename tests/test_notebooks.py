"""Every lesson runs top to bottom in quick mode, without errors or warnings from our code, with
the code the student writes filled in from the worked solutions (solutions/), which pass their
checks."""

import re
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_S = 600
if str(ROOT) not in sys.path:  # solutions/ is imported from the checkout, like the lessons' package
    sys.path.insert(0, str(ROOT))

import solutions  # noqa: E402


def slowest_cells(notebook, count: int = 4) -> list[tuple[float, int]]:
    """(seconds, index) of the slowest cells, from the timestamps nbclient records."""
    from datetime import datetime

    timings = []
    for index, cell in enumerate(notebook.cells):
        execution = cell.get("metadata", {}).get("execution", {})
        start, end = execution.get("iopub.execute_input"), execution.get("shell.execute_reply")
        if start and end:
            seconds = (datetime.fromisoformat(end.replace("Z", "+00:00"))
                       - datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()
            timings.append((seconds, index))
    return sorted(timings, reverse=True)[:count]


def code_checks(notebook) -> dict[str, str]:
    """{exercise id: the output of its check} for every code exercise the lesson checks."""
    from effnet_lab.exercises.code import CODE_EXERCISES

    found = {}
    for cell in notebook.cells:
        for exercise_id in re.findall(r"check\(\"(\d\d\.\d+)\"", cell.source) if cell.cell_type == "code" else ():
            if exercise_id in CODE_EXERCISES:
                found[exercise_id] = "".join(o.get("text", "") for o in cell.get("outputs", []))
    return found


def stderr_lines(notebook) -> list[str]:
    """Text written to stderr by any cell (warnings land there)."""
    return [
        output["text"]
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream" and output.get("name") == "stderr"
    ]


def test_there_are_lessons():
    assert any(path.name.startswith("00_") for path in NOTEBOOKS)


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs_in_quick_mode(path, tmp_path, monkeypatch, request):
    notebook = nbformat.read(path, as_version=4)
    filled = solutions.fill_in(notebook, path.name[:2])
    assert all("NotImplementedError" not in cell.source for cell in notebook.cells), "a TODO has no solution"
    if notebook.metadata.get("effnet_lab", {}).get("needs_cifar"):
        # A lesson that trains on CIFAR cannot run without a copy and without internet: skipped
        # (with the reason) like the other CIFAR tests; CI has the shared copy.
        request.getfixturevalue("cifar10")
    monkeypatch.setenv("EFFNET_LAB_QUICK", "1")
    # Runs, checkpoints and figures made by the lesson go to a temporary folder, not the checkout.
    monkeypatch.setenv("EFFNET_LAB_RESULTS", str(tmp_path / "runs"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    client = nbclient.NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError, with the failing cell, on any error
    seconds = time.perf_counter() - start
    print(f"{path.name}: {seconds:.1f} s; slowest cells: " + ", ".join(
        f"[{index}] {cell_seconds:.1f} s" for cell_seconds, index in slowest_cells(notebook)))
    warnings = [text for text in stderr_lines(notebook) if "Warning" in text or "Traceback" in text]
    assert not warnings, f"{path.name} printed warnings:\n" + "\n".join(warnings)
    checks = code_checks(notebook)
    assert len(checks) >= len(filled), f"{path.name}: a student's function is never checked"
    for exercise_id, output in checks.items():
        assert f"✅ {exercise_id}: right!" in output, f"{path.name}: the solution to {exercise_id} fails: {output}"
