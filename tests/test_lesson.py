"""lesson.setup() decides quick mode in one place: the environment, then QUICK, then the GPU."""

import pytest
import torch

from effnet_lab import lesson, settings


@pytest.fixture
def clean(monkeypatch):
    """No EFFNET_LAB_QUICK, no memory of an earlier setup(), results in a temporary folder."""
    monkeypatch.delenv(settings.QUICK_ENV, raising=False)
    monkeypatch.setattr(lesson, "_written_by_setup", {})
    return monkeypatch


def gpu(monkeypatch, present: bool):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: present)


@pytest.mark.parametrize("present, expected", [(False, True), (True, False)])
def test_none_means_quick_exactly_when_there_is_no_gpu(clean, present, expected):
    gpu(clean, present)
    on, reason = lesson.apply_quick(None)
    assert on is expected and ("no CUDA GPU" in reason) is expected
    assert settings.quick_mode() is expected  # the one reader agrees afterwards


@pytest.mark.parametrize("present", [False, True])
@pytest.mark.parametrize("forced", [True, False])
def test_true_or_false_forces_it_whatever_the_hardware(clean, present, forced):
    gpu(clean, present)
    on, reason = lesson.apply_quick(forced)
    assert on is forced and f"QUICK = {forced}" in reason
    assert settings.quick_mode() is forced


@pytest.mark.parametrize("value, expected", [("1", True), ("0", False)])
def test_the_environment_wins_over_quick_and_the_gpu(clean, value, expected):
    clean.setenv(settings.QUICK_ENV, value)
    gpu(clean, expected)  # the GPU would say the opposite
    on, reason = lesson.apply_quick(not expected)  # and so does QUICK
    assert on is expected and settings.QUICK_ENV in reason
    assert settings.quick_mode() is expected


def test_rerunning_the_setup_cell_with_another_quick_changes_the_mode(clean):
    gpu(clean, False)
    assert lesson.apply_quick(None)[0] is True  # writes EFFNET_LAB_QUICK=1 ...
    assert lesson.apply_quick(False)[0] is False  # ... which is not taken for the user's own
    assert settings.quick_mode() is False


def test_setup_prints_the_choice_and_its_reason(clean, tmp_path, capsys):
    clean.setenv(settings.RESULTS_ENV, str(tmp_path))
    gpu(clean, False)
    device = lesson.setup(quick=None)
    out = capsys.readouterr().out
    assert device.type == "cpu"
    assert "quick mode is on because no CUDA GPU was found" in out


def test_quick_must_be_none_true_or_false(clean):
    with pytest.raises(TypeError, match="QUICK must be None, True or False"):
        lesson.setup(quick="yes")


def test_announce_tells_the_estimate_for_the_mode_and_hardware(clean, capsys):
    clean.setenv(settings.QUICK_ENV, "1")
    lesson.announce("Training", quick_s=42, full_s=600)
    assert capsys.readouterr().out == "Training: about 40 s in quick mode on a 2-core CPU.\n"
    clean.setenv(settings.QUICK_ENV, "0")
    gpu(clean, True)
    lesson.announce("Training", quick_s=42, full_s=600)
    assert "about 10 min at full scale on a T4-class GPU" in capsys.readouterr().out
    gpu(clean, False)
    lesson.announce("Training", quick_s=42, full_s=600)
    assert "without a GPU many times longer" in capsys.readouterr().out
