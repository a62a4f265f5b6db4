"""OmegaConf resolvers the configs use; registered when ``rnnexp`` is imported.

Kept free of torch and Lightning imports: they run while Hydra composes, and a refused
``resume=`` should answer in a fraction of a second.
"""

import sys
from pathlib import Path

from omegaconf import OmegaConf

from rnnexp.errors import UserError


def check_resumable(run_dir) -> Path:
    """``run_dir`` if ``resume=run_dir`` can continue it; a :class:`UserError` otherwise."""
    run_dir = Path(run_dir)
    if run_dir.is_file() and run_dir.suffix == ".ckpt":
        raise UserError(f"resume={run_dir} is a checkpoint file; resume= takes its run directory: "
                        f"resume={run_dir.parent.parent} (or start a new run from the file with ckpt_path={run_dir})")
    if run_dir.name == "checkpoints" and run_dir.is_dir() and (run_dir.parent / ".hydra").is_dir():
        raise UserError(f"resume={run_dir} is the run's checkpoints folder; give the run directory itself: "
                        f"resume={run_dir.parent}")
    if not run_dir.is_dir():
        raise UserError(f"resume={run_dir}: no such run directory; give a folder under outputs/<task>/runs/")
    if not any((run_dir / "checkpoints").glob("*.ckpt")):
        raise UserError(f"resume={run_dir}: no checkpoint in {run_dir / 'checkpoints'}; the run stopped before its "
                        "first checkpoint, start it again without resume=")
    if (run_dir / "metrics.json").exists():
        raise UserError(f"resume={run_dir}: that run already finished (it has metrics.json), so there is nothing to "
                        f"resume; to train it further start a new run from its weights with "
                        f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'} and a larger trainer.max_epochs")
    return run_dir


def _resume_dir(resume, fresh):
    # hydra.run.dir: resume=<run dir> continues in that directory instead of a new one. It is
    # checked here, while Hydra resolves the directory, because Hydra creates it and writes
    # .hydra/ into it before the task function could look.
    return str(check_resumable(resume)) if resume else fresh


def _hydra_subdir(resume, stamp):
    # A resume keeps the original run's .hydra/ (its overrides are the record of how it was
    # started). Hydra would write the resume's own record before the task function can check
    # that the checkpoint fits, so Hydra writes none: rnnexp.train writes .hydra/resumed_<stamp>/
    # once the resume is accepted (a refused resume changes nothing in the run).
    return None if resume else ".hydra"


def register() -> None:
    resolvers = {
        # ${rnnexp.first:a,b}: the first value that is set.
        "rnnexp.first": lambda *values: next((v for v in values if v), None),
        "rnnexp.resume_dir": _resume_dir,
        "rnnexp.hydra_subdir": _hydra_subdir,
        # ${rnnexp.tty:}: whether stdout is a terminal (a progress bar there, log lines otherwise).
        "rnnexp.tty": lambda: sys.stdout.isatty(),
    }
    for name, function in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function)
