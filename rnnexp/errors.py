"""Errors caused by the user's input, as opposed to bugs.

Anything raised as a :class:`UserError` reaches the user as one line naming the
problem and the fix (see :mod:`rnnexp.runtime.cli`); everything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

from typing import Any, Iterable


class UserError(Exception):
    """A problem with a config value, a data file or a checkpoint."""


class ConfigError(UserError, ValueError):
    """A config value that is out of range or not a known choice.

    ``key`` is the parameter name; callers that know where the parameter sits in
    the config (for example ``model``) prefix it with :meth:`under`.
    """

    def __init__(self, key: str, value: Any, expected: str) -> None:
        self.key, self.value, self.expected = key, value, expected
        super().__init__(f"{key}={value!r} is invalid: {expected}")

    def under(self, prefix: str) -> "ConfigError":
        return ConfigError(f"{prefix}.{self.key}" if prefix else self.key, self.value, self.expected)


class DataError(UserError):
    """A data file that is missing, truncated or in the wrong format."""


def check_choice(key: str, value: Any, choices: Iterable[str]) -> None:
    choices = list(choices)
    if value not in choices:
        raise ConfigError(key, value, f"choose one of {', '.join(map(str, choices))}")


def is_int(value: Any) -> bool:
    """An integer, not a bool (YAML's true/false are ints to Python)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A real number (int or float), not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _bounds(low: Any, high: Any, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    return f"{'<' if high_open else '<='} {high}" if high is not None else ""


def _outside(value: Any, low: Any, high: Any, low_open: bool, high_open: bool) -> bool:
    return ((low is not None and (value <= low if low_open else value < low))
            or (high is not None and (value >= high if high_open else value > high)))


def check_int(key: str, value: Any, low: Any = None, high: Any = None, *, high_open: bool = True, hint: str = "") -> int:
    """An integer (not a bool) with ``low <= value`` and ``value < high`` (``<=`` if not ``high_open``);
    ``hint`` is appended to the message as written (e.g. ``" (0: off)"``)."""
    if not is_int(value) or _outside(value, low, high, False, high_open):
        raise ConfigError(key, value, f"must be an integer {_bounds(low, high, False, high_open)}".rstrip() + hint)
    return value


def check_number(key: str, value: Any, low: Any = None, high: Any = None, *, low_open: bool = False,
                 high_open: bool = True, hint: str = "") -> float:
    """A real number (int or float, not a bool) within the bounds: ``[low, high)`` by default,
    ``low_open``/``high_open`` say which ends are excluded; ``hint`` is appended to the message."""
    if not is_number(value) or value != value or _outside(value, low, high, low_open, high_open):
        raise ConfigError(key, value, f"must be a number {_bounds(low, high, low_open, high_open)}".rstrip() + hint)
    return value


def check_positive_int(key: str, value: Any) -> int:
    return check_int(key, value, 1)


def check_fraction(key: str, value: Any) -> float:
    """A probability such as a dropout rate: 0 <= value < 1."""
    return check_number(key, value, 0, 1)
