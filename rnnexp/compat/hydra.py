"""Hydra internals rnnexp uses: the line Hydra prints above a single run's error, a job's raw outcome.

Hydra 1.3's ``JobReturn.return_value`` logs "Error executing job with overrides: [...]" before it
re-raises a failed job's exception. In a multirun that line names the failing job; in a single
run the overrides are what the user just typed, and rnnexp's one ``error:`` line says what failed,
so while :func:`single_run_errors_raised_plainly` is active a failed single run re-raises its
exception without that line. The property is replaced only inside the ``with`` block and restored
after it; if Hydra renames it, the replacement is skipped and Hydra's own behaviour (the extra
line) comes back.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from hydra.core.utils import JobReturn, JobStatus
from hydra.types import RunMode

_HYDRA_RETURN_VALUE = JobReturn.__dict__.get("return_value")


def _return_value(job: JobReturn):
    single_run = job.hydra_cfg is not None and job.hydra_cfg.hydra.mode == RunMode.RUN
    if job.status == JobStatus.FAILED and single_run:
        raise job._return_value
    return _HYDRA_RETURN_VALUE.fget(job)


@contextlib.contextmanager
def single_run_errors_raised_plainly() -> Iterator[None]:
    if not isinstance(_HYDRA_RETURN_VALUE, property):
        yield
        return
    JobReturn.return_value = property(_return_value, _HYDRA_RETURN_VALUE.fset)
    try:
        yield
    finally:
        JobReturn.return_value = _HYDRA_RETURN_VALUE


def returned(job: JobReturn):
    """What a finished job returned, or the exception it raised, without raising it
    (``JobReturn.return_value`` re-raises; a sweeper records the failure instead)."""
    return job._return_value


def check() -> None:
    import hydra

    job = JobReturn()
    if not isinstance(_HYDRA_RETURN_VALUE, property) or not hasattr(job, "_return_value"):
        raise RuntimeError(f"hydra-core {hydra.__version__}: JobReturn.return_value is no longer a property over "
                           "_return_value: update rnnexp/compat/hydra.py")
