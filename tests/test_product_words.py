"""The product speaks for itself: every tracked file names hardware, software, data, commands
and dates, never how the project was developed; and every module stays short enough to read
in one sitting."""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Words of a development workflow that a student or instructor has none of: tracker numbers,
# a borrowed machine and its transfer folders, dry runs of a job list.
DEVELOPMENT_WORDS = re.compile(
    # (a bracket in each word, so that this line does not match itself)
    r"\biss[u]e #?[0-9]|\bdev[i]ce tool|\bl[e]nt\b|\bl[e]nding\b|carr[i]ed folder|\$O[U]T\b|reh[e]ars|gpu_[j]obs|gpu_[n]ext",
    re.IGNORECASE,
)
MODULE_LINES = 460  # "none much over 450 lines": a module a newcomer can hold in their head


def tracked_text_files() -> list[Path]:
    try:
        listing = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: no list of tracked files")
    files = []
    for name in listing.decode().split("\0"):
        path = ROOT / name
        if name and path.is_file():
            data = path.read_bytes()
            if b"\0" not in data[:8192]:
                files.append(path)
    return files


def development_words(text: str) -> list[str]:
    return [line.strip()[:120] for line in text.splitlines() if DEVELOPMENT_WORDS.search(line)]


def test_no_tracked_file_speaks_of_how_the_project_was_developed():
    found = []
    for path in tracked_text_files():
        for line in development_words(path.read_text(encoding="utf-8", errors="replace")):
            found.append(f"{path.relative_to(ROOT)}: {line}")
    assert not found, "say it in terms of hardware, commands and data, or drop it:\n" + "\n".join(found[:30])


# The examples are assembled from pieces so that this file itself holds none of the words.
@pytest.mark.parametrize("line", [
    "items 3 and 4 of " + "iss" + "ue 8", "on the GPU the " + "dev" + "ice tool " + "le" + "nt",
    "a GPU was " + "le" + "nt twice", "copy it into the " + "carr" + "ied folder",
    "files come back through $" + "OUT", "re" + "hearsed on the CPU", "python3 benchmarks/" + "gpu_" + "jobs.py next",
])
def test_the_word_check_catches_development_words(line):
    assert development_words(line) == [line]


@pytest.mark.parametrize("line", [
    "a lentil soup", "issues with the data loader", "an NVIDIA H200, 2026-11-27",
    "python -m effnet_lab reproduce --list", "the output folder", "issue tracker (GitHub)",
])
def test_the_word_check_leaves_product_words_alone(line):
    assert development_words(line) == []


def test_every_module_is_short_enough_to_read_in_one_sitting():
    modules = sorted((ROOT / "effnet_lab").rglob("*.py"))
    assert modules
    long = {str(p.relative_to(ROOT)): n for p in modules if (n := len(p.read_text().splitlines())) > MODULE_LINES}
    assert not long, f"split these by idea (at most {MODULE_LINES} lines each): {long}"
