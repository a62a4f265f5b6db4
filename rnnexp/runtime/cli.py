"""Run a Hydra app so that bad input ends in one line, not a traceback.

Hydra prints tracebacks (or several lines of search paths) for every error unless
``HYDRA_FULL_ERROR=1``. We ask Hydra to re-raise, then report user errors ourselves:
an unknown group choice, an override of a missing key, a value out of range, a bad
data file. Anything else is a bug and keeps its full traceback. ``HYDRA_FULL_ERROR=1``
from the user still shows everything.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sys
import sysconfig
import traceback
from typing import Callable, Optional

from hydra.errors import (
    ConfigCompositionException,
    HydraException,
    InstantiationException,
    MissingConfigException,
    OverrideParseException,
)
from omegaconf.errors import OmegaConfBaseException

from rnnexp.compat.hydra import single_run_errors_raised_plainly
from rnnexp.errors import ConfigError, UserError

EXIT_USER_ERROR = 2
# Errors creating a run directory or writing into it that the user fixes by picking another place.
_UNWRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.ENOSPC, errno.EDQUOT}


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _from_hydra_job_setup(exc: BaseException) -> bool:
    """Whether ``exc`` came from Hydra's own file operations (making the run directory, writing
    ``.hydra/``, opening the log file), not from the task function Hydra called."""
    frames = traceback.extract_tb(exc.__traceback__)
    hydra_frames = [i for i, f in enumerate(frames) if f"{os.sep}hydra{os.sep}" in f.filename]
    if not hydra_frames:
        return False
    stdlib = sysconfig.get_paths()["stdlib"]
    return all(f.filename.startswith(stdlib) and "site-packages" not in f.filename for f in frames[hydra_frames[-1] + 1:])


def _gpu_missing(message: str) -> bool:
    return "No supported gpu backend found" in message or "CUDAAccelerator` can not run on your system" in message


def describe(exc: BaseException) -> Optional[str]:
    """One line for an error caused by the user's input, or None for a bug."""
    chain = list(_chain(exc))
    # Where in the config an instantiated object failed ("full_key: model").
    full_key = ""
    for e in chain:
        match = re.search(r"full_key: (\S+)", str(e))
        if match:
            full_key = match.group(1)
            break
    for e in chain:
        if isinstance(e, ConfigError):
            inside = e.key == full_key or e.key.startswith(full_key + ".")
            return str(e.under(full_key) if full_key and not inside else e)
        if isinstance(e, UserError):
            return str(e)
    for e in chain:
        if isinstance(e, OSError) and e.filename and (e.errno in _UNWRITABLE or _from_hydra_job_setup(e)):
            # /proc/x (ENOENT), a path under a file (ENOTDIR), a read-only folder (EACCES, EROFS).
            return (f"cannot write {e.filename}: {e.strerror}; choose a writable folder with "
                    "paths.log_dir=<dir> (or hydra.run.dir=<dir>)")
        if isinstance(e, InstantiationException) and e.__cause__ is not None and _gpu_missing(str(e.__cause__)):
            return f"{full_key or 'trainer'}: this machine has no usable GPU; use trainer=cpu (or trainer.accelerator=cpu)"
        if isinstance(e, InstantiationException) and e.__cause__ is not None:
            # Hydra's own line only says "Error in call to target ...": the cause names the value.
            cause = str(e.__cause__).strip().splitlines()[0] if str(e.__cause__).strip() else type(e.__cause__).__name__
            where = f"{full_key}: " if full_key else ""
            hint = f" (fix it with {full_key}.<key>=...)" if full_key else ""
            return f"{where}{cause}{hint}"
        if isinstance(e, MissingConfigException) and e.options is not None:
            match = re.search(r"Could not find '([^']+)'", str(e))
            missing = match.group(1) if match else e.missing_cfg_file
            group, _, choice = (missing or "").rpartition("/")
            options = ", ".join(sorted(e.options)) or "(none)"
            return f"{group}={choice} is not a known choice; valid choices for '{group}': {options}"
        if isinstance(e, OverrideParseException):
            return f"cannot parse override {e.override!r}: {e.message.splitlines()[0]}"
        if isinstance(e, ConfigCompositionException):
            first = str(e).strip().splitlines()[0]
            match = re.search(r"Ambiguous value for argument '([^'=]+)=([^']*)'", first)
            if match:  # Hydra's own hint is on the next lines: keep it, in one line
                key, value = match.groups()
                return (f"{key}={value} is ambiguous: for a list write {key}=[{value}], for a string quote it "
                        f"(\"{key}='{value}'\"), to sweep over the values add -m")
            match = re.search(r"Could not override '([^']+)'", first)
            if match:
                return f"{match.group(1)} is not a config key; check the spelling with --cfg job, or add a new key with +{match.group(1)}=..."
            match = re.search(r"Could not append to config. An item is already at '([^']+)'", first)
            if match:
                return f"{match.group(1)} already exists; override it without the leading +"
            return first
        if isinstance(e, OmegaConfBaseException):
            first = str(e).strip().splitlines()[0]
            key = re.search(r"full_key: (\S+)", str(e))
            return f"{first} (at {key.group(1)})" if key else first
        if isinstance(e, HydraException):
            return str(e).strip().splitlines()[0]
    return None


def run_app(hydra_main: Callable[[], object]) -> None:
    """Call a ``@hydra.main`` function, turning user errors into ``error: ...`` and exit code 2."""
    before = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        with single_run_errors_raised_plainly() if before != "1" else contextlib.nullcontext():
            hydra_main()
    except Exception as exc:  # noqa: BLE001 - everything is re-raised unless it is the user's input
        message = None if before == "1" else describe(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    finally:
        # Leave the environment as found: a second app in the same process must not
        # mistake our setting for the user's request for tracebacks.
        if before is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = before
