"""Parameter validation, one mechanism for every estimator and config section: scikit-learn-style
``_parameter_constraints`` checked by :func:`validate_params` (at ``fit``) or :func:`check_params`
(on values not yet given to an object)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Interval:
    """Numbers of ``kind`` between ``low`` and ``high`` (None: unbounded); ``closed`` says which
    ends are included: "both", "left", "right" or "neither". Bools are never numbers here."""

    kind: type
    low: float | None
    high: float | None
    closed: str = "both"

    def __call__(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, self.kind | np.integer | np.floating):
            return False
        if self.kind is numbers.Integral and not isinstance(value, numbers.Integral | np.integer):
            return False
        if not math.isfinite(float(value)) and (self.low is not None or self.high is not None):
            return False
        left, right = self.closed in ("both", "left"), self.closed in ("both", "right")
        if self.low is not None and (value < self.low or (not left and value == self.low)):
            return False
        return not (self.high is not None and (value > self.high or (not right and value == self.high)))

    def __str__(self) -> str:
        name = "an int" if self.kind is numbers.Integral else "a number"
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        brackets = {"both": "[]", "left": "[)", "right": "(]", "neither": "()"}[self.closed]
        return f"{name} in {brackets[0]}{lo}, {hi}{brackets[1]}"


@dataclass(frozen=True)
class Options:
    """One of the given values."""

    values: tuple[Any, ...]

    def __call__(self, value: Any) -> bool:
        return any(value == v and type(value) is type(v) for v in self.values)  # 1 is not True

    def __str__(self) -> str:
        return "one of " + ", ".join(map(repr, self.values))


@dataclass(frozen=True)
class Check:
    """Any predicate, with the words an error message uses for it."""

    predicate: Callable[[Any], bool]
    description: str

    def __call__(self, value: Any) -> bool:
        try:
            return bool(self.predicate(value))
        except (TypeError, ValueError):
            return False

    def __str__(self) -> str:
        return self.description


#: Constraints several settings share: a number > 0, a number >= 0, an int >= 1, a fraction in (0, 1]
POSITIVE = Interval(numbers.Real, 0, None, closed="neither")
NON_NEGATIVE = Interval(numbers.Real, 0, None)
COUNT = Interval(numbers.Integral, 1, None)
FRACTION = Interval(numbers.Real, 0, 1, closed="right")


def _describe(constraint: Any) -> str:
    if constraint is None:
        return "None"
    if isinstance(constraint, type):
        return f"an instance of {constraint.__name__}"
    return str(constraint)


def _satisfies(value: Any, constraint: Any) -> bool:
    if constraint is None:
        return value is None
    if isinstance(constraint, type):
        return isinstance(value, constraint)
    return constraint(value)


def validate_params(owner: Any, constraints: Mapping[str, Sequence[Any]]) -> None:
    """Check an estimator's parameters against ``constraints`` (parameter name -> allowed
    constraints; a value is valid when it satisfies any one of them), the way scikit-learn's
    ``_parameter_constraints`` do: ``None``, a type, :class:`Interval`, :class:`Options` or
    :class:`Check`. Called at the start of ``fit`` (``__post_init__`` of a settings dataclass);
    ``__init__`` stays a plain store. :func:`check_params` checks values not yet given to one.

    Raises
    ------
    ValueError
        ``The 'C' parameter of KernelSVMHead must be a number in (0, inf]; got -1.``
    """
    check_params({param: getattr(owner, param) for param in constraints}, constraints, type(owner).__name__)


def check_params(values: Mapping[str, Any], constraints: Mapping[str, Sequence[Any]], owner: str) -> None:
    """:func:`validate_params` on the ``values`` of some parameters of ``owner`` (a class name)
    before any object is made (a config file's table): the keys of ``values`` that have
    constraints are checked, with the message the estimator itself would give."""
    for param, value in values.items():
        if param in constraints and (why := unmet(value, constraints[param])):
            raise ValueError(f"The {param!r} parameter of {owner} {why}.")


def unmet(value: Any, allowed: Sequence[Any]) -> str | None:
    """None when ``value`` satisfies one of the constraints ``allowed``, else what it fails:
    ``must be a number in (0, inf]; got -1`` (the words of every parameter check, also of the
    command-line options)."""
    if any(_satisfies(value, c) for c in allowed):
        return None
    return f"must be {' or '.join(_describe(c) for c in allowed)}; got {value!r}"
