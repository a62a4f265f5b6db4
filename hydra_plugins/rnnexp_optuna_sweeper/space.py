"""Hydra's sweep syntax as Optuna distributions, and sampled values back as Hydra overrides."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep

from rnnexp.errors import ConfigError


def distribution(override: Override):
    """Hydra sweep syntax -> an Optuna distribution.

    ``choice(a, b)`` -> categorical; ``range(1, 4)`` -> ints 1..3, ``range(0, 10, 3)`` -> 0, 3, 6, 9
    (floats with a step: the values Hydra's own sweeper enumerates);
    ``interval(lo, hi)`` -> uniform floats, ``tag(log, interval(...))`` log-uniform,
    ``tag(int, interval(...))`` integers.
    """
    import optuna.distributions as d

    value, key = override.value(), override.get_key_element()
    if isinstance(value, ChoiceSweep):
        choices = list(value.list)
        for c in choices:
            if not (c is None or isinstance(c, (bool, int, float, str))):
                raise ConfigError(key, c, "choice() values must be numbers, strings, booleans or null")
        return d.CategoricalDistribution(choices)
    if isinstance(value, RangeSweep):
        # The values Hydra's basic sweeper would enumerate (stop excluded, the last partial step
        # included: range(0, 10, 3) is 0, 3, 6, 9), as Optuna's low, high and step.
        count, step = len(list(value.range())), value.step or 1
        if count == 0:
            raise ConfigError(key, override.input_line, "the range is empty; give start < stop for a positive step")
        if all(isinstance(x, int) for x in (value.start, value.stop, step)):
            ends = (value.start, value.start + (count - 1) * step)
            return d.IntDistribution(min(ends), max(ends), step=abs(step))
        # Decimal arithmetic: 0.3 * 3 is 0.8999999999999999 in floats, which Optuna would round down to 0.6.
        start, dstep = Decimal(str(value.start)), Decimal(str(step))
        ends = (float(start), float(start + (count - 1) * dstep))
        return d.FloatDistribution(min(ends), max(ends), step=float(abs(dstep)))
    if isinstance(value, IntervalSweep):
        log_scale = "log" in value.tags
        if "int" in value.tags:
            return d.IntDistribution(int(value.start), int(value.end), log=log_scale)
        return d.FloatDistribution(float(value.start), float(value.end), log=log_scale)
    raise ConfigError(key, override.input_line, "use choice(...), range(...) or interval(...)")


def format_value(value: Any) -> str:
    """A sampled value as Hydra override text."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if re.fullmatch(r"[\w./:@+-]+", text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
