"""Hydra's sweep syntax as Optuna distributions, the grid of a space, sampled values as overrides.

The grammar of Hydra's official Optuna sweeper, with the same meaning:

- ``choice(a, b)``, ``shuffle(choice(...))``, ``shuffle(range(...))``: categorical;
- ``range(start, stop[, step])``: the values Hydra's own sweeper enumerates (stop excluded), as a
  stepped int or float distribution; ``range(0, 10, 3)`` is 0, 3, 6, 9;
- ``interval(lo, hi)``: uniform floats; ``int(interval(lo, hi))`` or ``tag(int, interval(...))``:
  integers; ``tag(log, ...)`` either on a log scale.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep

from rnnexp.errors import ConfigError

_SIMPLE = (bool, int, float, str, type(None))


def _categorical(key: str, values: Sequence[Any]):
    import optuna.distributions as d

    for v in values:
        if not isinstance(v, _SIMPLE):
            raise ConfigError(key, v, "choice() values must be numbers, strings, booleans or null")
    return d.CategoricalDistribution(list(values))


def distribution(override: Override):
    """One sweep override -> an Optuna distribution."""
    import optuna.distributions as d

    value, key = override.value(), override.get_key_element()
    if isinstance(value, ChoiceSweep):
        return _categorical(key, list(value.list))
    if isinstance(value, RangeSweep):
        values = list(value.range())
        if not values:
            raise ConfigError(key, override.input_line, "the range is empty; give start < stop for a positive step")
        if value.shuffle:  # shuffle(range(...)) is a set of values, as in the official plugin
            return _categorical(key, values)
        step = value.step or 1
        if all(isinstance(x, int) for x in (value.start, value.stop, step)):
            ends = (value.start, value.start + (len(values) - 1) * step)
            return d.IntDistribution(min(ends), max(ends), step=abs(step))
        # Decimal arithmetic: 0.3 * 3 is 0.8999999999999999 in floats, which Optuna would round down to 0.6.
        start, dstep = Decimal(str(value.start)), Decimal(str(step))
        ends = (float(start), float(start + (len(values) - 1) * dstep))
        return d.FloatDistribution(min(ends), max(ends), step=float(abs(dstep)))
    if isinstance(value, IntervalSweep):
        log_scale = "log" in value.tags
        # interval() gives floats; int(interval(...)) casts both ends to int.
        if "int" in value.tags or (isinstance(value.start, int) and isinstance(value.end, int)):
            return d.IntDistribution(int(value.start), int(value.end), log=log_scale)
        return d.FloatDistribution(float(value.start), float(value.end), log=log_scale)
    raise ConfigError(key, override.input_line, "use choice(...), range(...) or interval(...)")


def search_space(lines: Sequence[str], parser: Optional[OverridesParser] = None) -> Tuple[Dict[str, Any], List[str]]:
    """``key=<sweep>`` lines (params first, then the command line, which wins) ->
    ({key: distribution}, the fixed overrides every trial gets)."""
    parser = parser or OverridesParser.create()
    space: Dict[str, Any] = {}
    fixed: Dict[str, str] = {}
    for override in parser.parse_overrides(list(lines)):
        key = override.get_key_element()
        space.pop(key, None), fixed.pop(key, None)
        if override.is_sweep_override():
            space[key] = distribution(override)
        else:
            fixed[key] = override.input_line
    return space, list(fixed.values())


def grid_points(space: Mapping[str, Any]) -> Dict[str, List[Any]]:
    """Every value of each distribution, for ``GridSampler``; continuous ones are refused."""
    import optuna.distributions as d

    grid: Dict[str, List[Any]] = {}
    for key, dist in space.items():
        if isinstance(dist, d.CategoricalDistribution):
            grid[key] = list(dist.choices)
        elif isinstance(dist, d.IntDistribution) and not dist.log:
            grid[key] = list(range(dist.low, dist.high + 1, dist.step))
        elif isinstance(dist, d.FloatDistribution) and dist.step is not None:
            start, step = Decimal(str(dist.low)), Decimal(str(dist.step))
            count = int((Decimal(str(dist.high)) - start) / step) + 1
            grid[key] = [float(start + i * step) for i in range(count)]
        else:
            raise ConfigError(key, dist, "a grid needs discrete values: use choice(...) or range(...) "
                                         "(interval(...) has no grid points)")
    return grid


def grid_size(grid: Mapping[str, List[Any]]) -> int:
    size = 1
    for values in grid.values():
        size *= len(values)
    return size


def load_custom_search_space(path: Optional[str], task_function: Any) -> Optional[Callable[..., None]]:
    """``custom_search_space``: a dotted path to ``fn(cfg, trial)``. A leading dot names a module
    file beside the app's script (``.custom-search-space-objective.configure``, as in the official
    example), which need not be importable by name."""
    if not path:
        return None
    from hydra.utils import get_method

    if not path.startswith("."):
        try:
            return get_method(path)
        except Exception as exc:  # noqa: BLE001 - Hydra wraps import errors in several types
            raise ConfigError("hydra.sweeper.custom_search_space", path,
                              f"cannot import it ({' '.join(str(exc).split())[:200]})") from exc
    module, _, name = path[1:].rpartition(".")
    try:
        here = Path(inspect.getfile(task_function)).parent
    except TypeError:
        here = Path.cwd()
    file = here / f"{module.replace('.', '/')}.py"
    if not file.is_file() or not name:
        raise ConfigError("hydra.sweeper.custom_search_space", path, f"no file {file} with a function {name!r}")
    spec = importlib.util.spec_from_file_location("_custom_search_space_" + re.sub(r"\W", "_", module), file)
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = loaded
    spec.loader.exec_module(loaded)
    if not callable(getattr(loaded, name, None)):
        raise ConfigError("hydra.sweeper.custom_search_space", path, f"{file} has no function {name!r}")
    return getattr(loaded, name)


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
