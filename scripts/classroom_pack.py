"""Render every lesson, executed in quick mode, to HTML with its outputs and figures.

    python scripts/classroom_pack.py                      # every lesson -> classroom/
    python scripts/classroom_pack.py --lessons 02 04      # some lessons
    python scripts/classroom_pack.py --solutions          # code exercises filled in (for instructors)
    python scripts/classroom_pack.py --out handout/       # another folder

Each lesson runs top to bottom in a fresh kernel with quick mode on (EFFNET_LAB_QUICK=1),
its runs written to a temporary folder, and is saved as one self-contained HTML file (the
figures are embedded) plus an index.html listing them. Without --solutions the code the
student writes is left as it is, so its checks say "not written yet": the pack is safe to
hand out. The lessons that train on CIFAR need the data (see README.md, Data). classroom/
is ignored by git.
"""

from __future__ import annotations

import argparse
import html
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


def render(notebook_path: Path, out: Path, solutions: bool = False, timeout: int = 600) -> Path:
    """Execute one lesson in quick mode and write it as HTML; returns the HTML file."""
    import nbclient
    import nbformat
    from nbconvert import HTMLExporter

    notebook = nbformat.read(notebook_path, as_version=4)
    if solutions:
        sys.path.insert(0, str(ROOT))
        import solutions as worked

        worked.fill_in(notebook, notebook_path.name[:2])
    with tempfile.TemporaryDirectory() as runs:
        saved = {key: os.environ.get(key) for key in ("EFFNET_LAB_QUICK", "EFFNET_LAB_RESULTS")}
        os.environ.update(EFFNET_LAB_QUICK="1", EFFNET_LAB_RESULTS=runs)
        try:
            nbclient.NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                                    resources={"metadata": {"path": str(notebook_path.parent)}}).execute()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    body, _ = HTMLExporter(embed_images=True).from_notebook_node(notebook)
    out.mkdir(parents=True, exist_ok=True)
    target = out / (notebook_path.stem + ".html")
    target.write_text(body, encoding="utf-8")
    return target


def write_index(pages: list[Path], out: Path) -> Path:
    items = "\n".join(f'<li><a href="{html.escape(page.name)}">{html.escape(page.stem)}</a></li>' for page in pages)
    index = out / "index.html"
    index.write_text(f"<!doctype html>\n<meta charset='utf-8'>\n<title>effnet-lab lessons</title>\n"
                     f"<h1>effnet-lab lessons (quick mode)</h1>\n<ul>\n{items}\n</ul>\n", encoding="utf-8")
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lessons", nargs="*", help="lesson numbers such as 02 04 (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "classroom", help="folder for the HTML (default: classroom/)")
    parser.add_argument("--solutions", action="store_true", help="fill in the code exercises from solutions/")
    args = parser.parse_args(argv)
    lessons = sorted(NOTEBOOKS.glob("*.ipynb"))
    if args.lessons:
        wanted = {f"{int(number):02d}" for number in args.lessons}
        lessons = [path for path in lessons if path.name[:2] in wanted]
        if len(lessons) != len(wanted):
            parser.error(f"no lesson for some of {sorted(wanted)}; the lessons are {[p.name[:2] for p in sorted(NOTEBOOKS.glob('*.ipynb'))]}")
    pages = []
    for path in lessons:
        start = time.perf_counter()
        print(f"{path.name}: running in quick mode ...", flush=True)
        pages.append(render(path, args.out, solutions=args.solutions))
        print(f"{path.name}: {time.perf_counter() - start:.0f} s -> {pages[-1]}", flush=True)
    print(f"index: {write_index(pages, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
