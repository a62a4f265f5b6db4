"""submitit internals: its job-state watcher, replaced on clusters without SLURM accounting, and
the jobs it still watches (the ones an aborted sweep cancels).

submitit reads job states with ``sacct``, which needs ``slurmdbd``. On a cluster without it (the
local one of ``scripts/start_slurm.sh``, many small lab clusters) a cancelled job would look
UNKNOWN forever and a sweep would wait for it. :func:`read_job_states_without_accounting` swaps
submitit's process-wide watcher (``SlurmJob.watcher``, a class attribute) for one reading
``scontrol show job`` there; with accounting it changes nothing.
"""

from __future__ import annotations

import re
import subprocess
from typing import Any, Dict, List, Optional

from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob


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



class ScontrolWatcher(SlurmInfoWatcher):
    """submitit's job-state watcher, reading ``scontrol show job`` when ``sacct`` has no records."""

    def _make_command(self) -> Optional[List[str]]:
        command = super()._make_command()
        return None if command is None else ["scontrol", "show", "job", "-o"]

    def read_info(self, string: Any) -> Dict[str, Dict[str, str]]:
        return read_scontrol(string.decode() if isinstance(string, bytes) else string)


def read_job_states_without_accounting() -> None:
    if not isinstance(SlurmJob.watcher, ScontrolWatcher) and not _accounting_enabled():
        SlurmJob.watcher = ScontrolWatcher(delay_s=SlurmJob.watcher._delay_s)


def unfinished_jobs() -> List[str]:
    """The SLURM job ids this process submitted through submitit and has not seen finish.

    submitit registers every job it submits with its one watcher per process, which is the only
    list of them a launcher leaves (Hydra's submitit launcher keeps its job objects to itself);
    read through ``getattr``, so a submitit without them gives no ids.
    """
    watcher = getattr(SlurmJob, "watcher", None)
    registered = set(getattr(watcher, "_registered", ()))
    finished = set(getattr(watcher, "_finished", ()))
    return sorted(registered - finished)


def check() -> None:
    import submitit

    missing = [name for name, ok in (
        ("SlurmJob.watcher", isinstance(getattr(SlurmJob, "watcher", None), SlurmInfoWatcher)),
        ("SlurmInfoWatcher._make_command", callable(getattr(SlurmInfoWatcher, "_make_command", None))),
        ("SlurmInfoWatcher._delay_s", hasattr(getattr(SlurmJob, "watcher", None), "_delay_s")),
        ("SlurmInfoWatcher._registered", hasattr(getattr(SlurmJob, "watcher", None), "_registered")),
        ("SlurmInfoWatcher._finished", hasattr(getattr(SlurmJob, "watcher", None), "_finished")),
    ) if not ok]
    if missing:
        raise RuntimeError(f"submitit {submitit.__version__} lacks {', '.join(missing)}: update rnnexp/compat/submitit.py")
