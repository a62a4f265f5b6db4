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


def check_positive_int(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(key, value, "must be an integer >= 1")


def check_fraction(key: str, value: Any) -> None:
    """A probability such as a dropout rate: 0 <= value < 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ConfigError(key, value, "must be a number in [0, 1)")
