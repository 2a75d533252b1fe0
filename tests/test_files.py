"""Atomic writes: a failed write leaves the old file whole and no temporary file behind."""

import json

import pytest
import torch

from effnet_lab.files import atomic_write, save_torch, write_json, write_text


def test_writes_replace_the_whole_file(tmp_path):
    path = tmp_path / "deep" / "record.json"
    write_json(path, {"accuracy": 0.5, "path": tmp_path})  # folders made, unknown types as text
    assert json.loads(path.read_text()) == {"accuracy": 0.5, "path": str(tmp_path)}
    write_text(path, "short")
    assert path.read_text() == "short"
    save_torch(tmp_path / "state.pt", {"w": torch.ones(2)})
    assert torch.equal(torch.load(tmp_path / "state.pt")["w"], torch.ones(2))


def test_an_interrupted_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "checkpoint.pt"
    write_text(path, "old and whole")

    def interrupted(file):
        file.write(b"half of the new")
        raise KeyboardInterrupt  # the student pressed stop mid-write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, interrupted)
    assert path.read_text() == "old and whole"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left
