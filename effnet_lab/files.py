"""Files that survive interruptions: every checkpoint, record, table and cache is written here.

A run can be stopped at any moment (a Colab disconnect, Ctrl-C, a GPU lease ending). Writing
to a temporary file in the same folder and renaming it over the old one means a reader
always sees either the whole old file or the whole new one, never half of one: a rename
within a folder is atomic.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False) as tmp:
        try:
            write(tmp)
            tmp.flush()
            os.fsync(tmp.fileno())  # on disk before the rename makes it visible
        except BaseException:
            os.unlink(tmp.name)
            raise
    os.chmod(tmp.name, 0o644)  # readable by others, like any file the user makes
    os.replace(tmp.name, path)
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def write_json(path: str | os.PathLike, value) -> Path:
    """Write ``value`` as indented JSON to ``path`` atomically (unknown types as strings)."""
    return write_text(path, json.dumps(value, indent=2, default=str) + "\n")


def save_torch(path: str | os.PathLike, value) -> Path:
    """``torch.save`` to ``path`` atomically."""
    import torch

    return atomic_write(path, lambda f: torch.save(value, f))


# A log that grows one record at a time is appended to, not rewritten: each record is one
# JSON line, on disk before the call returns. A crash can only cut the last line short, and
# the reader drops (or, with ``repair``, removes) such a line.


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append ``record`` to ``path`` as one JSON line, flushed to disk before returning."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | os.PathLike, repair: bool = False) -> list[dict]:
    """The records of a JSON-lines file ([] when there is none). A last line cut short by a
    crash is ignored (and, with ``repair``, removed from the file so that the next append
    starts clean)."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text()
    complete, _, partial = text.rpartition("\n")
    if partial and repair:
        with open(path, "r+") as f:
            f.truncate(len(complete) + 1 if complete else 0)
    lines = complete.split("\n") if complete else []
    return [json.loads(line) for line in lines if line.strip()]
