"""Answer checkers for the lessons' exercises.

In a notebook::

    from effnet_lab.exercises import check
    check("04.3", 300)             # a number: prints whether it is right (a hint if not)
    check("02.6", SeparableConv)   # code you wrote: run against effnet_lab on random inputs

Two kinds of exercise share the ids: those with a number (or a word) for an answer
(``answers.py``, registered here) and those where the student writes a function or a class
(``code.py``: each checker runs it against the package and says in one sentence what is
wrong). Worked solutions for instructors are in the project's ``solutions/`` folder.

Each exercise is registered once, with a function that *computes* the right answer from
``effnet_lab`` itself (so the checker and the package can never disagree), a hint that
points the way without giving the answer, and how answers are compared. Adding one for a
new lesson is a decorated function::

    @exercise("07.1", "How many classes does the Lite0 classifier predict?", kind="integer",
              hint="Look at the last linear layer.")
    def _answer_07_1():
        return create_model("lite0").classifier.out_features

Kinds: ``"integer"`` (exact), ``"number"`` (within ``rel_tol``), ``"choice"`` (one of
``choices``, case and surrounding spaces ignored). Ids are ``"LL.N"``: lesson, exercise.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

KINDS = ("integer", "number", "choice")
ID_PATTERN = re.compile(r"^\d\d\.\d+[a-z]?$")


@dataclass(frozen=True)
class Exercise:
    """One exercise with a computable answer."""

    id: str  # "02.3": lesson 02, exercise 3
    question: str
    answer: Callable[[], object]  # computes the right answer; never shown to the student
    hint: str
    kind: str = "number"
    rel_tol: float = 0.01  # "number": how close counts as right
    choices: tuple[str, ...] = ()  # "choice": the accepted vocabulary

    @property
    def lesson(self) -> str:
        return self.id.split(".")[0]


EXERCISES: dict[str, Exercise] = {}


def register(item: Exercise) -> Exercise:
    """Add an exercise to the registry (ids are unique and look like ``"04.2"``)."""
    if not isinstance(item, Exercise):
        raise TypeError(f"register() takes an Exercise, got {type(item).__name__}")
    if not ID_PATTERN.match(item.id):
        raise ValueError(f"exercise id must look like '04.2' (lesson.number), got {item.id!r}")
    if item.id in EXERCISES:
        raise ValueError(f"exercise {item.id!r} is already registered")
    if item.kind not in KINDS:
        raise ValueError(f"unknown exercise kind {item.kind!r}; choose one of {list(KINDS)}")
    if item.kind == "choice" and not item.choices:
        raise ValueError(f"exercise {item.id!r} is a choice but lists no choices")
    EXERCISES[item.id] = item
    return item


def exercise(
    id: str,
    question: str,
    *,
    hint: str,
    kind: str = "number",
    rel_tol: float = 0.01,
    choices: Sequence[str] = (),
) -> Callable[[Callable[[], object]], Callable[[], object]]:
    """Decorator: register the decorated function as the answer to exercise ``id``."""

    def decorate(answer: Callable[[], object]) -> Callable[[], object]:
        register(Exercise(id, question, answer, hint, kind, rel_tol, tuple(choices)))
        return answer

    return decorate


def exercises(lesson: str | int | None = None) -> list[Exercise]:
    """The registered exercises, all or those of one lesson (``"02"`` or ``2``)."""
    if lesson is None:
        return list(EXERCISES.values())
    key = f"{int(lesson):02d}" if isinstance(lesson, int) else str(lesson)
    return [item for item in EXERCISES.values() if item.lesson == key]


def _get(exercise_id: str) -> Exercise:
    if exercise_id not in EXERCISES:
        known = ", ".join(sorted({*EXERCISES, *CODE_EXERCISES}))
        raise ValueError(f"no exercise {exercise_id!r}; the exercises with checkers are: {known}")
    return EXERCISES[exercise_id]


def hint(exercise_id: str) -> str:
    """The hint of an exercise (what ``check`` prints after a wrong answer)."""
    return _get(exercise_id).hint


def _as_number(answer: object) -> float | None:
    """A plain number from what a student may pass: int, float, numpy or 0-d torch value, '1.5'."""
    if hasattr(answer, "item") and getattr(answer, "ndim", 0) == 0:
        answer = answer.item()  # numpy scalars and one-element tensors
    if isinstance(answer, str):
        try:
            answer = float(answer.replace(",", "").replace("_", "").strip())
        except ValueError:
            return None
    if isinstance(answer, bool) or not isinstance(answer, numbers.Real):
        return None
    number = float(answer)
    return number if math.isfinite(number) else None


@cache
def _expected(item: Exercise) -> object:
    """The right answer, computed once (some answers count the MACs of B7)."""
    return item.answer()


def _judge(item: Exercise, answer: object) -> tuple[bool, str]:
    """(right?, what to tell the student): the comparison for each kind of exercise."""
    expected = _expected(item)
    if item.kind == "choice":
        if not isinstance(answer, str):
            return False, f"answer with one of {list(item.choices)} (a string)"
        given = answer.strip().lower()
        if given not in [choice.lower() for choice in item.choices]:
            return False, f"answer with one of {list(item.choices)}"
        return given == str(expected).lower(), ""
    number = _as_number(answer)
    if number is None:
        return False, f"this exercise expects a number, got {answer!r}"
    if item.kind == "integer":
        if number != int(number):
            return False, "this exercise expects a whole number"
        right = int(number) == int(expected)
    else:
        right = math.isclose(number, float(expected), rel_tol=item.rel_tol, abs_tol=1e-12)
    if right:
        return True, ""
    return False, "your answer is too high" if number > float(expected) else "your answer is too low"


def check(exercise_id: str, answer: object, *, quiet: bool = False) -> bool:
    """Check ``answer`` to exercise ``exercise_id``: print a friendly verdict, return True if right."""
    if exercise_id in CODE_EXERCISES:  # the student's function or class, not a number
        return check_code(exercise_id, answer, quiet=quiet)
    item = _get(exercise_id)
    right, detail = _judge(item, answer)
    if not quiet:
        if right:
            print(f"✅ {exercise_id}: right!")
        else:
            print(f"❌ {exercise_id}: not yet ({detail}). Hint: {item.hint}")
    return right


# Registered last: they use the decorator above.
from . import answers  # noqa: E402,F401
from .code import CODE_EXERCISES, check_code  # noqa: E402,F401
