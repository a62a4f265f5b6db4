"""The ``key=value`` arguments of the tools (``rnnexp.generate``, ``translate``, ``evaluate``), parsed one way.

Each tool describes its settings as a dataclass; :func:`parse_arguments` checks every argument
against it, types the values with OmegaConf (as Hydra types the training app's overrides) and
turns a wrong key or a wrongly typed value into one :class:`~rnnexp.errors.UserError` line that
lists the keys. ``verbatim`` keys are text (``prime=1`` stays the string "1") and may repeat;
``passthrough`` prefixes (``data.``, ``paths.``) are handed back untouched for the run's config.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, Dict, List, Sequence, Tuple, Type, TypeVar

from omegaconf import OmegaConf

from rnnexp.errors import UserError

T = TypeVar("T")


def parse_arguments(argv: Sequence[str], schema: Type[T], verbatim: Sequence[str] = (),
                    passthrough: Sequence[str] = ()) -> Tuple[T, Dict[str, List[str]], List[str]]:
    """``argv`` -> (settings, {verbatim key: values in order}, passthrough arguments)."""
    known = {f.name for f in fields(schema)}
    own: List[str] = []
    texts: Dict[str, List[str]] = {key: [] for key in verbatim}
    passed: List[str] = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key in texts:
            texts[key].append(value)
        elif sep and key in known:
            own.append(arg)
        elif sep and "." in key and key.split(".", 1)[0] in passthrough:
            passed.append(arg)
        else:
            keys = ", ".join(sorted(known | set(verbatim)) + [f"{p}.<key>" for p in passthrough])
            raise UserError(f"unknown argument {arg!r}; use key=value with keys {keys}")
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.from_dotlist(own))
    except Exception as exc:  # noqa: BLE001 - a value of the wrong type ("lr=abc")
        raise UserError(f"{str(exc).splitlines()[0]}; check {', '.join(own)}") from exc
    settings: Any = schema(**OmegaConf.to_container(cfg))
    return settings, texts, passed
