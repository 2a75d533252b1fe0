"""scripts/classroom_pack.py renders a lesson, executed in quick mode, to HTML with its figures."""

import re
from pathlib import Path

import pytest
from script_loader import load_script

pytest.importorskip("nbconvert")
nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parent.parent
LESSON = ROOT / "notebooks" / "03_inverted_residuals_and_linear_bottlenecks.ipynb"


@pytest.mark.notebook
@pytest.mark.slow
def test_one_lesson_renders_with_its_figures(tmp_path, monkeypatch):
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend draws the figures
    pack = load_script("scripts/classroom_pack.py")
    assert pack.main(["--lessons", "03", "--out", str(tmp_path), "--solutions"]) == 0
    page = (tmp_path / (LESSON.stem + ".html")).read_text()
    figures = [cell for cell in nbformat.read(LESSON, as_version=4).cells
               if cell.cell_type == "code" and "plt.show()" in cell.source]
    images = re.findall(r'<img[^>]+src="data:image/png;base64,', page)
    assert figures and len(images) >= len(figures), f"{len(images)} images for {len(figures)} figure cells"
    assert "quick mode is on" in page  # executed, in quick mode, with its outputs
    assert "✅ 03.7: right!" in page  # --solutions filled in the student's MBConv
    assert LESSON.stem in (tmp_path / "index.html").read_text()


def test_unknown_lessons_are_refused(capsys):
    with pytest.raises(SystemExit):
        load_script("scripts/classroom_pack.py").main(["--lessons", "42"])
    assert "no lesson" in capsys.readouterr().err
