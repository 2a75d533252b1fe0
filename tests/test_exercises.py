"""The exercise checkers accept the right answers (derived here independently, by hand or
with torchvision's models) and reject wrong ones, without ever printing the answer."""

import math

import pytest
import torch

from effnet_lab import B0_STAGES, count_macs, count_params
from effnet_lab import exercises as ex

B0_REPEATS = [stage.repeats for stage in B0_STAGES]


def _torchvision(name):
    import torchvision

    with torch.device("meta"):  # shapes only
        return getattr(torchvision.models, f"efficientnet_{name}")()


def _residual_block_indices():
    """Block indices (0..15) of B0's blocks with a skip connection: all but each stage's first,
    plus none of the first blocks (their channels or stride change)."""
    indices, index = [], 0
    for repeats in B0_REPEATS:
        indices += list(range(index + 1, index + repeats))
        index += repeats
    return indices


# Right answers, derived without the package's answer functions.
RIGHT = {
    "00.1": lambda: sum(math.ceil(3.1 * r) for r in B0_REPEATS),
    "00.3": lambda: count_macs(_torchvision("b0"), 448) / count_macs(_torchvision("b0"), 224),
    "00.4": lambda: 96 // 32,  # ImageNet stem: five halvings
    # 01.1: 0.80 x (20M / 10M)^-0.07; 01.2: (2 kernels x 3 expands x 3 depths x 2 SE)^4 stages.
    "01.1": lambda: 0.80 * 2 ** -0.07,
    "01.2": lambda: (2 * 3 * 3 * 2) ** 4,
    "01.3": lambda: math.log(0.84 / 0.80) / math.log(10 / 40),
    "01.4": lambda: 1 - (1 - 1 / 1296) ** 100,  # (1/2 kernels x 1/3 expansions)^4 stages
    "01.5": lambda: "no",  # T multiplies every reward by the same T^-w
    "02.1": lambda: 3 * 3 * 64 * 128,
    "02.2": lambda: (5 * 5 * 256 + 256 * 256) / (5 * 5 * 256 * 256),
    "02.3": lambda: 73,  # 1/C < 1/8 - 1/9 = 1/72  <=>  C > 72
    "02.4": lambda: 9 / 8,  # 9 MACs per (4-byte read + 4-byte write)
    "03.1": lambda: (40 * 240 + 2 * 240) + (25 * 240 + 2 * 240) + (240 * 10 + 10 + 10 * 240 + 240) + (240 * 40 + 2 * 40),
    "03.2": lambda: 1 / 32,
    "03.3": lambda: sum(0.2 * i / 16 for i in _residual_block_indices()),
    "03.4": lambda: 672 * 28 + 28 + 28 * 672 + 672,
    "04.1": lambda: 1.2 * 1.1**2 * 1.15**2,
    "04.2": lambda: (2 / (1.2 * 1.21)) ** 0.5,
    "04.3": lambda: round(224 * 1.15**3),
    "04.4": lambda: 448,  # 1.4 * 320 = 448 is already a multiple of 8
    "04.5": lambda: sum(math.ceil(1.44 * r) for r in B0_REPEATS),
    "06.1": lambda: count_macs(_torchvision("b7"), 600) / count_macs(_torchvision("b0"), 224),
    "06.2": lambda: (1280 * 1000 + 1000) / count_params(_torchvision("b0")),
    "06.3": lambda: count_macs(_torchvision("b0"), 600) / count_macs(_torchvision("b0"), 224),
}


@pytest.mark.parametrize("exercise_id", sorted(RIGHT))
def test_right_answers_are_accepted_and_wrong_ones_rejected(exercise_id, capsys):
    right = RIGHT[exercise_id]()
    assert ex.check(exercise_id, right)
    assert "right" in capsys.readouterr().out
    item = ex.EXERCISES[exercise_id]
    if item.kind == "choice":
        wrong = [choice for choice in item.choices if choice != right]
    elif item.kind == "integer":
        wrong = [right + 1, right - 1]
    else:
        wrong = [right * 1.1, right * 0.9, -right]
    for answer in wrong:
        assert not ex.check(exercise_id, answer)
        message = capsys.readouterr().out
        assert "Hint" in message and item.hint in message
        if item.kind != "choice":  # a yes/no hint may use the words; numbers are never given away
            assert str(right) not in message and f"{right:g}" not in message


def test_every_exercise_of_these_lessons_is_covered_here():
    lessons = {exercise_id.split(".")[0] for exercise_id in RIGHT}
    assert set(RIGHT) == {item.id for item in ex.exercises() if item.lesson in lessons}


@pytest.mark.parametrize("exercise_id", sorted(ex.EXERCISES))
def test_every_registered_checker_accepts_its_answer_and_rejects_another(exercise_id):
    """The registry's contract, for every lesson's checkers (including ones added later)."""
    item = ex.EXERCISES[exercise_id]
    right = item.answer()
    assert ex.check(exercise_id, right, quiet=True)
    if item.kind == "choice":
        assert str(right).lower() in [choice.lower() for choice in item.choices]
        wrong = next(choice for choice in item.choices if choice.lower() != str(right).lower())
    elif item.kind == "integer":
        wrong = int(right) + 1
    else:
        wrong = float(right) * (1 + 2 * item.rel_tol) + 1e-9
    assert not ex.check(exercise_id, wrong, quiet=True)


def test_answers_in_other_forms(capsys):
    assert ex.check("02.1", "73,728", quiet=True)  # a string, with a thousands separator
    assert ex.check("02.1", torch.tensor(73728), quiet=True)  # a 0-d tensor
    assert ex.check("04.1", 1.92, quiet=True)  # rounded to two decimals is close enough
    assert not ex.check("02.1", 73728.5, quiet=True)
    for nonsense in ("a lot", None, True, float("nan"), [73728]):
        assert not ex.check("02.1", nonsense)
        assert "expects a number" in capsys.readouterr().out
    # A Monte Carlo estimate of 03.2 passes (5% tolerance).
    generator = torch.Generator().manual_seed(0)
    x = torch.tensor([1.0, 0.3])
    trials = torch.randn(200_000, 5, 2, generator=generator) @ x
    assert ex.check("03.2", (trials <= 0).all(dim=1).float().mean(), quiet=True)


def test_too_high_and_too_low_are_told(capsys):
    ex.check("04.3", 400)
    assert "too high" in capsys.readouterr().out
    ex.check("04.3", 300)
    assert "too low" in capsys.readouterr().out


def test_unknown_ids_list_the_known_ones():
    with pytest.raises(ValueError, match="02.1"):
        ex.check("99.9", 1)
    with pytest.raises(ValueError):
        ex.hint("2.1")


def test_lessons_have_three_to_five_checked_exercises():
    for lesson in ("01", "02", "03", "04", "05", "06", "07"):
        assert 3 <= len(ex.exercises(lesson)) <= 5
    assert ex.exercises(2) == ex.exercises("02")


def test_registering_a_new_exercise(monkeypatch, capsys):
    monkeypatch.setattr(ex, "EXERCISES", dict(ex.EXERCISES))  # leave the real registry alone

    @ex.exercise("05.9", "Which axis saturates first?", hint="Look at the curves.", kind="choice",
                 choices=("width", "depth", "resolution"))
    def _answer():
        return "depth"

    assert ex.check("05.9", " Depth ")
    assert not ex.check("05.9", "width")
    assert not ex.check("05.9", "height")
    assert "one of" in capsys.readouterr().out
    with pytest.raises(ValueError, match="already registered"):
        ex.register(ex.EXERCISES["05.9"])
    with pytest.raises(ValueError, match="id"):
        ex.register(ex.Exercise("5.9", "q", lambda: 1, "h"))
    with pytest.raises(ValueError, match="kind"):
        ex.register(ex.Exercise("05.8", "q", lambda: 1, "h", kind="essay"))
    with pytest.raises(ValueError, match="choices"):
        ex.register(ex.Exercise("05.7", "q", lambda: "a", "h", kind="choice"))


def test_choices_ignore_case_and_a_placeholder_gets_a_verdict():
    assert ex.check("01.5", " No ")
    assert not ex.check("01.5", None)  # the notebook's placeholder: a verdict, not an error
