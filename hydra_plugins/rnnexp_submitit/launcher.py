"""hydra-submitit-launcher's SLURM launcher, with two additions.

1. **Requeue continues the run.** When SLURM signals a time limit or preemption, submitit asks
   the running callable for a checkpoint and requeues the job. The plugin's own ``checkpoint()``
   resubmits the same overrides, so the requeued job would train from scratch (in the same run
   directory). Here the requeued job gets ``resume=<its run dir>`` as well, and continues from
   the checkpoint ``rnnexp.callbacks.requeue.SaveOnRequeueSignal`` wrote on the signal.
2. **Job states without accounting.** submitit reads job states with ``sacct``, which needs
   ``slurmdbd``. On a cluster without it (the local one of ``scripts/start_slurm.sh``) a
   cancelled job would look UNKNOWN forever and its sweep would wait for it; there submitit's
   watcher reads ``scontrol show job`` instead (:mod:`rnnexp.compat.submitit`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

try:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

    from rnnexp.compat.submitit import read_job_states_without_accounting
except ImportError:  # the optional slurm extra is not installed: nothing to define
    SlurmLauncher = None


if SlurmLauncher is not None:

    class RequeueingSlurmLauncher(SlurmLauncher):
        def setup(self, **kwargs: Any) -> None:
            super().setup(**kwargs)
            read_job_states_without_accounting()

        def checkpoint(self, sweep_overrides: Sequence[str], *args: Any, **kwargs: Any) -> Any:
            """Called by submitit in the job on SLURM's requeue signal: the job to run after the requeue."""
            import submitit
            from hydra.core.hydra_config import HydraConfig

            overrides = list(sweep_overrides)
            run_dir = Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else None
            if run_dir and any((run_dir / "checkpoints").glob("*.ckpt")) and not (run_dir / "metrics.json").exists():
                overrides = [o for o in overrides if o.split("=")[0].lstrip("+~") != "resume"] + [f"resume={run_dir}"]
            return submitit.helpers.DelayedSubmission(self, overrides, *args, **kwargs)
