"""Argument checks that fail early, with the parameter's name in the message.

A student who types ``phi=float('nan')`` or ``width=0`` should read "phi must be a finite
number, got nan", not a shape error twenty frames deep inside PyTorch.
"""

from __future__ import annotations

import argparse
import math
import numbers
from collections.abc import Iterable


def check_number(
    name: str,
    value: object,
    *,
    minimum: float | None = None,
    exclusive_minimum: float | None = None,
) -> float:
    """Return ``value`` as a float, or raise a TypeError/ValueError naming ``name``.

    ``minimum`` allows equality (alpha >= 1); ``exclusive_minimum`` does not (width > 0).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {number}")
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {number}")
    if exclusive_minimum is not None and number <= exclusive_minimum:
        raise ValueError(f"{name} must be greater than {exclusive_minimum}, got {number}")
    return number


def check_int(name: str, value: object, *, minimum: int | None = None) -> int:
    """Return ``value`` as an int (whole floats such as 3.0 are accepted), or raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if isinstance(value, numbers.Integral):
        number = int(value)
    else:
        if not math.isfinite(float(value)) or float(value) != int(value):
            raise ValueError(f"{name} must be a whole number, got {value}")
        number = int(value)
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {number}")
    return number


def check_choice(name: str, value: object, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``, or raise a ValueError listing them."""
    choices = list(choices)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {choices}, got {value!r} ({type(value).__name__})")
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {choices}")
    return value


# Argument types for the command lines (argparse calls them on the text typed): a bad value
# stops the script with "argument --steps: must be at least 1, got 0" before any work starts.
def _argument_type(convert, what: str, minimum: float, *, exclusive: bool = False):
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        too_small = value <= minimum if exclusive else value < minimum
        if not math.isfinite(value) or too_small:
            bound = f"greater than {minimum:g}" if exclusive else f"at least {minimum:g}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value

    return parse


positive_int = _argument_type(int, "a whole number", 1)
nonnegative_int = _argument_type(int, "a whole number", 0)
positive_float = _argument_type(float, "a number", 0, exclusive=True)
