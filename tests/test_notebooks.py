"""Every lesson runs top to bottom in quick mode, without errors or warnings from our code."""

import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_S = 600


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
    print(f"{path.name}: {seconds:.1f} s")
    warnings = [text for text in stderr_lines(notebook) if "Warning" in text or "Traceback" in text]
    assert not warnings, f"{path.name} printed warnings:\n" + "\n".join(warnings)
