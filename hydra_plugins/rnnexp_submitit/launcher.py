"""hydra-submitit-launcher's SLURM launcher, with two additions.

1. **Requeue continues the run.** When SLURM signals a time limit or preemption, submitit asks
   the running callable for a checkpoint and requeues the job. The plugin's own ``checkpoint()``
   resubmits the same overrides, so the requeued job would train from scratch (in the same run
   directory). Here the requeued job gets ``resume=<its run dir>`` as well, and continues from
   the checkpoint ``rnnexp.callbacks.requeue.SaveOnRequeueSignal`` wrote on the signal.
2. **Job states without accounting.** submitit reads job states with ``sacct``, which needs
   ``slurmdbd``. On a cluster without it (the local one of ``scripts/start_slurm.sh``) a
   cancelled job would look UNKNOWN forever and its sweep would wait for it; the watcher below
   reads ``scontrol show job`` there instead.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

try:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
    from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob
except ImportError:  # the optional slurm extra is not installed: nothing to define
    SlurmLauncher = None


def _accounting_enabled() -> bool:
    try:
        config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return True  # let submitit's sacct calls report the problem
    match = re.search(r"^AccountingStorageType\s*=\s*(\S+)", config, re.M)
    return not (match and match.group(1).endswith("/none"))


def _task_ids(text: str) -> List[str]:
    """``0-2,5%4`` -> ["0", "1", "2", "5"] (the pending tasks of an array)."""
    ids: List[str] = []
    for part in text.split("%")[0].split(","):
        low, _, high = part.partition("-")
        if low.isdigit():
            ids += [str(i) for i in range(int(low), int(high or low) + 1)]
    return ids


def read_scontrol(text: str) -> Dict[str, Dict[str, str]]:
    """``scontrol show job -o`` -> {job id: {"JobID", "State", "NodeList"}}, with the keys
    submitit uses (``<array id>_<task id>`` for array tasks)."""
    info: Dict[str, Dict[str, str]] = {}
    for line in text.splitlines():
        fields = dict(re.findall(r"(?:^|\s)(JobId|ArrayJobId|ArrayTaskId|JobState|NodeList)=(\S*)", line))
        if "JobId" not in fields:
            continue
        stats = {"JobID": fields["JobId"], "State": fields.get("JobState", "UNKNOWN"), "NodeList": fields.get("NodeList", "")}
        info[fields["JobId"]] = stats
        if "ArrayJobId" in fields:
            for task in _task_ids(fields.get("ArrayTaskId", "")):
                info[f"{fields['ArrayJobId']}_{task}"] = stats
    return info


if SlurmLauncher is not None:

    class ScontrolWatcher(SlurmInfoWatcher):
        """submitit's job-state watcher, reading ``scontrol show job`` when ``sacct`` has no records."""

        def _make_command(self) -> Optional[List[str]]:
            command = super()._make_command()
            return None if command is None else ["scontrol", "show", "job", "-o"]

        def read_info(self, string: Any) -> Dict[str, Dict[str, str]]:
            return read_scontrol(string.decode() if isinstance(string, bytes) else string)

    class RequeueingSlurmLauncher(SlurmLauncher):
        def setup(self, **kwargs: Any) -> None:
            super().setup(**kwargs)
            # submitit keeps one watcher for all SLURM jobs of the process, as a class attribute.
            if not isinstance(SlurmJob.watcher, ScontrolWatcher) and not _accounting_enabled():
                SlurmJob.watcher = ScontrolWatcher(delay_s=SlurmJob.watcher._delay_s)

        def checkpoint(self, sweep_overrides: Sequence[str], *args: Any, **kwargs: Any) -> Any:
            """Called by submitit in the job on SLURM's requeue signal: the job to run after the requeue."""
            import submitit
            from hydra.core.hydra_config import HydraConfig

            overrides = list(sweep_overrides)
            run_dir = Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else None
            if run_dir and any((run_dir / "checkpoints").glob("*.ckpt")) and not (run_dir / "metrics.json").exists():
                overrides = [o for o in overrides if o.split("=")[0].lstrip("+~") != "resume"] + [f"resume={run_dir}"]
            return submitit.helpers.DelayedSubmission(self, overrides, *args, **kwargs)
