"""The command line as a user runs it: ``python train.py ...`` or ``python -m rnnexp.<tool> ...``.

:func:`run_cli` starts a real subprocess (what the user sees, end to end: ~6 s of importing
torch, Lightning and Hydra each time). :func:`run_in_process` runs the same entry point
(``train.py``, or ``<module>``, run as ``__main__`` by ``runpy``) inside the test's process with
its ``sys.argv``, working directory, environment, stdout/stderr and exit code captured, and puts
back what a run changes process-wide (the logging tree Hydra configures, torch's thread count,
Hydra's singletons), for the many bad-input cases that end before training: the same code path
without the import cost. A few cases of each kind still run as subprocesses (tests/test_bad_input.py).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import runpy
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Optional

from tests.helpers.paths import ROOT


def run_cli(*args: str, cwd: Path, env: Optional[dict] = None, module: Optional[str] = None, timeout: float = 300):
    """Run ``python train.py args`` (or ``python -m module args``) in a subprocess from ``cwd``."""
    command = [sys.executable, "-m", module] if module else [sys.executable, str(ROOT / "train.py")]
    full_env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    full_env.update({"PYTHONPATH": str(ROOT), **(env or {})})
    return subprocess.run(
        [*command, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


@contextlib.contextmanager
def _process_state_restored(env: dict):
    """Environment, cwd, argv, logging, torch threads and Hydra's singletons as they were."""
    import torch
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    saved_env, saved_cwd, saved_argv = dict(os.environ), os.getcwd(), list(sys.argv)
    def loggers():  # the root and every named logger, as Hydra's dictConfig may reconfigure them
        return [logging.root] + [lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger)]

    saved_loggers = {lg: (list(lg.handlers), lg.level, lg.propagate, lg.disabled) for lg in loggers()}
    threads = torch.get_num_threads()
    os.environ.pop("HYDRA_FULL_ERROR", None)
    os.environ.update(env)
    try:
        yield
    finally:
        for lg in loggers():
            handlers, level, propagate, disabled = saved_loggers.get(lg, ([], logging.NOTSET, True, False))
            for handler in lg.handlers:
                if handler not in handlers:
                    handler.close()
            lg.handlers[:], lg.propagate, lg.disabled = handlers, propagate, disabled
            lg.setLevel(level)
        torch.set_num_threads(threads)
        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = None
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
        sys.argv[:] = saved_argv


def run_in_process(*args: str, cwd: Path, env: Optional[dict] = None, module: Optional[str] = None):
    """``run_cli``'s result (``returncode``, ``stdout``, ``stderr``) from a run inside this process.

    An exception that escapes the entry point is reported as Python reports it (a traceback on
    stderr, exit code 1), so a test that asserts "no traceback" fails on it as it would on a
    subprocess.
    """
    argv0 = module or str(ROOT / "train.py")
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with _process_state_restored(env or {}):
        os.chdir(cwd)
        sys.argv[:] = [argv0, *args]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                if module:  # python -m module: its ``if __name__ == "__main__"`` runs
                    runpy.run_module(module, run_name="__main__", alter_sys=True)
                else:
                    runpy.run_path(argv0, run_name="__main__")
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:  # noqa: BLE001 - reported as the interpreter would
                traceback.print_exc(file=err)
                code = 1
    return subprocess.CompletedProcess([argv0, *args], code, out.getvalue(), err.getvalue())
