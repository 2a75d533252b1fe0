"""The checkers of the code students write: every one accepts its worked solution (solutions/),
rejects a deliberately wrong version with one sentence saying what differs, and reports code
that is not written yet, or that crashes, without a traceback."""

import importlib
import re
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from effnet_lab import exercises as ex
from effnet_lab.exercises.code import CODE_EXERCISES

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
if str(ROOT) not in sys.path:  # the worked solutions are imported from the checkout
    sys.path.insert(0, str(ROOT))
SOLUTIONS = {exercise_id: (f"solutions.lesson{exercise_id[:2]}", item.name) for exercise_id, item in CODE_EXERCISES.items()}


def solution(exercise_id):
    module, name = SOLUTIONS[exercise_id]
    return getattr(importlib.import_module(module), name)


# --- deliberately wrong answers: each one a mistake a student could make -------------------------


def reinforce_with_the_wrong_sign(controller, optimizer, choices, reward, baseline, decay=0.9):
    baseline = reward if baseline is None else baseline
    loss = (reward - baseline) * controller(choices).log_prob  # makes good children *less* likely
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return decay * baseline + (1 - decay) * reward


class StandardConvCalledSeparable(nn.Module):  # forgot groups=c_in
    def __init__(self, c_in, c_out, kernel_size, stride=1):
        super().__init__()
        self.depthwise = nn.Conv2d(c_in, c_in, kernel_size, stride, padding=kernel_size // 2, bias=False)
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


def squeeze_excitation_with_relu(x, reduce, expand):
    return x * torch.sigmoid(expand(F.relu(reduce(x.mean(dim=(2, 3), keepdim=True)))))


def mbconv_without_skip():
    parent = solution("03.7")

    class NoSkip(parent):
        def forward(self, x):
            self.use_residual = False
            return super().forward(x)

    return NoSkip


def scale_b0_rounding_to_nearest(phi, alpha=1.2, beta=1.1, gamma=1.15):
    from effnet_lab import B0_STAGES

    channels = [max(8, round(stage.channels * beta**phi / 8) * 8) for stage in B0_STAGES]  # no 10% rule
    repeats = [round(stage.repeats * alpha**phi) for stage in B0_STAGES]  # should round up
    return channels, repeats, round(224 * gamma**phi)


def count_without_se_biases(config):
    total = solution("06.5")(config)
    return total - sum(  # forgets both SE biases of every block
        (max(1, int(c_in * stage.se_ratio)) + round(c_in * stage.expand_ratio)) * (stage.se_ratio > 0)
        for stage, c_in in _block_inputs(config)
    )


def _block_inputs(config):
    c_in = config.stem_out
    for stage in config.scaled_stages():
        for _ in range(stage.repeats):
            yield stage, c_in
            c_in = stage.channels


def probe_step_without_weight_decay(probe, features, labels, lr, weight_decay):
    loss = F.cross_entropy(probe(features), labels)
    probe.zero_grad()
    loss.backward()
    with torch.no_grad():
        for parameter in probe.parameters():
            parameter -= lr * parameter.grad
    return loss.item()


WRONG = {
    "01.6": (reinforce_with_the_wrong_sign, "differs from nas.Reinforce's"),
    "02.6": (StandardConvCalledSeparable, "parameters where a separable convolution has"),
    "03.6": (squeeze_excitation_with_relu, "differs from effnet_lab's"),
    "03.7": (mbconv_without_skip, "differs from effnet_lab's"),
    "04.6": (scale_b0_rounding_to_nearest, "where the official rounding gives"),
    "06.5": (count_without_se_biases, "too few"),
    "07.6": (probe_step_without_weight_decay, "probe_step's loss is"),
}


def one_sentence(output: str, exercise_id: str) -> str:
    """The checker's verdict: one line, one sentence, no traceback."""
    assert output.count("\n") == 1 and "Traceback" not in output, output
    prefix = f"❌ {exercise_id}: not yet: "
    assert output.startswith(prefix) and output.rstrip().endswith("."), output
    sentence = output[len(prefix):].strip()
    assert not re.search(r"\.\s+[A-Z]", sentence), f"more than one sentence: {sentence}"
    return sentence


def test_every_code_exercise_has_a_solution_and_a_wrong_answer():
    assert set(WRONG) == set(CODE_EXERCISES)
    assert {exercise_id[:2] for exercise_id in CODE_EXERCISES} >= {"01", "02", "03", "04", "06", "07"}


@pytest.mark.parametrize("exercise_id", sorted(CODE_EXERCISES))
def test_the_solution_passes(exercise_id, capsys):
    assert ex.check(exercise_id, solution(exercise_id))
    assert capsys.readouterr().out.startswith(f"✅ {exercise_id}: right!")


@pytest.mark.parametrize("exercise_id", sorted(CODE_EXERCISES))
def test_a_wrong_answer_fails_with_one_sentence(exercise_id, capsys):
    wrong, words = WRONG[exercise_id]
    if exercise_id == "03.7":
        wrong = wrong()
    assert not ex.check(exercise_id, wrong)
    assert words in one_sentence(capsys.readouterr().out, exercise_id)


@pytest.mark.parametrize("exercise_id", sorted(CODE_EXERCISES))
def test_unwritten_code_is_told_not_written_yet(exercise_id, capsys):
    def todo(*args, **kwargs):
        raise NotImplementedError("write it")

    assert not ex.check(exercise_id, todo)
    assert "not written yet" in one_sentence(capsys.readouterr().out, exercise_id)


def test_a_crash_is_one_sentence_naming_the_error(capsys):
    def crashes(x, reduce, expand):
        return x @ torch.ones(3, 3, 3)  # a shape error deep in torch

    assert not ex.check("03.6", crashes)
    assert "raised RuntimeError" in one_sentence(capsys.readouterr().out, "03.6")
    assert not ex.check("03.6", 42)
    assert "not int" in one_sentence(capsys.readouterr().out, "03.6")


def test_the_lessons_ask_for_every_code_exercise_and_check_it():
    """Each code exercise appears in its lesson as a definition that raises NotImplementedError,
    under the name the checker and the solution use, followed by its check."""
    import nbformat

    notebooks = {path.name[:2]: nbformat.read(path, as_version=4) for path in NOTEBOOKS}
    for exercise_id, item in CODE_EXERCISES.items():
        cells = [cell.source for cell in notebooks[exercise_id[:2]].cells if cell.cell_type == "code"]
        todo = next((i for i, source in enumerate(cells) if re.search(rf"^(def|class) {item.name}\b", source, re.M)
                     and "NotImplementedError" in source), None)
        assert todo is not None, f"lesson {exercise_id[:2]} has no {item.name} to write"
        assert f'check("{exercise_id}", {item.name})' in cells[todo + 1], f"{item.name} is not checked right after"
