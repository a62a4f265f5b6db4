"""Multiruns and sweeps as jobs of a real SLURM cluster (slow tier; RNNEXP_START_SERVICES=1 starts a local one
with scripts/start_slurm.sh, RNNEXP_SLURM_PARTITION=<name> uses a running one: tests/helpers/services.py).

Jobs are the toy task cut to seconds; each test names its jobs uniquely, so tests running side
by side under pytest-xdist (and other users of the cluster) do not see each other's jobs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import List

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from tests.helpers import ROOT, run_cli
from tests.helpers.metrics import read_metrics
from tests.helpers.services import slurm_partition, unique
from tests.helpers.waiting import wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@pytest.fixture(scope="module")
def partition() -> str:
    return slurm_partition()


def _launcher(partition: str, name: str) -> List[str]:
    return ["hydra/launcher=slurm", f"hydra.launcher.partition={partition}", f"hydra.launcher.name={name}",
            "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=15",
            "trainer.enable_progress_bar=false"]


def _start(tmp_path: Path, *args: str) -> subprocess.Popen:
    command = [sys.executable, str(ROOT / "train.py"), "-m", f"hydra.sweep.dir={tmp_path / 'sweep'}", *args]
    # The jobs import rnnexp and the tests' helpers (callbacks) from this checkout.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _finish(process: subprocess.Popen, timeout: float = 300) -> str:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, (out + err)[-4000:]
    return out + err


def _job_id(run_dir: Path) -> str:
    """The SLURM job id submitit gave the job of ``run_dir`` (Hydra keeps it as hydra.job.id)."""
    return str(yaml.safe_load((run_dir / ".hydra" / "hydra.yaml").read_text())["hydra"]["job"]["id"])


def _scontrol(job_id: str) -> dict:
    text = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True).stdout
    return dict(re.findall(r"(\w+)=(\S*)", text))


def _metrics(run_dir: Path) -> dict:
    return read_metrics(run_dir, timings=False)


def test_a_multirun_runs_each_job_as_a_slurm_job(tmp_path, partition):
    name = unique("rnnexp-grid")
    process = _start(tmp_path, *_launcher(partition, name), "cell=rnn,gru", "debug=fdr")
    queued = set()

    def both_seen():  # the scheduler lists the jobs while they wait or run
        listed = subprocess.run(["squeue", "-h", "-n", name, "-o", "%i"], capture_output=True, text=True).stdout
        queued.update(i for i in listed.split() if re.fullmatch(r"\d+_\d+", i))  # not the pending 11_[0-1%2]
        return len(queued) == 2 or process.poll() is not None

    wait_for(both_seen, what="squeue to list the jobs")
    _finish(process)
    sweep = tmp_path / "sweep"
    recorded = {p.name for p in (sweep / ".submitit").iterdir() if re.fullmatch(r"\d+_\d+", p.name)}
    assert queued == recorded and len(recorded) == 2
    for number, cell in enumerate(["rnn", "gru"]):
        run = sweep / str(number)
        assert _job_id(run) in recorded
        # The result is written before the job's process exits: the job ends a moment later.
        wait_for(lambda: _scontrol(_job_id(run)).get("JobState") == "COMPLETED", timeout=60, what="COMPLETED")
        assert {"metrics.json", "config.yaml", "train.log", ".hydra", "checkpoints"} <= {p.name for p in run.iterdir()}
        assert yaml.safe_load((run / "config.yaml").read_text())["model"]["cell"] == cell
        assert "test/loss" in _metrics(run)


def test_ddp_with_two_slurm_tasks_matches_one_process(tmp_path, partition):
    common = ["trainer.max_epochs=2", "model.dropout=0.0", "trainer.enable_progress_bar=false"]
    process = _start(tmp_path, *_launcher(partition, unique("rnnexp-ddp")), "hydra.launcher.tasks_per_node=2",
                     "trainer=ddp", "trainer.devices=2", "data.batch_size=3", *common)
    single = tmp_path / "single"
    single.mkdir()
    result = run_cli("data.batch_size=6", *common, f"hydra.run.dir={single}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    _finish(process)
    sweep = tmp_path / "sweep"
    assert [p.relative_to(sweep) for p in sweep.rglob("metrics.json")] == [Path("0/metrics.json")]
    ddp, one = _metrics(sweep / "0"), _metrics(single)
    for key in ("test/loss", "val/loss", "test/acc"):  # the tolerance of tests/test_ddp.py
        assert ddp[key] == pytest.approx(one[key], rel=1e-4, abs=1e-5), key
    # SLURM started both ranks (one log per task); Lightning re-launched nothing.
    job = _job_id(sweep / "0")
    assert len(list((sweep / ".submitit" / job).glob(f"{job}_*_log.out"))) == 2
    assert not (sweep / "0" / "train_ddp_process_1.log").exists()
    assert _scontrol(job)["NumTasks"] == "2"


def test_an_async_optuna_sweep_on_slurm_goes_on_when_a_trial_is_cancelled(tmp_path, partition):
    url, study_name = f"sqlite:///{tmp_path / 'study.db'}", unique("slurm-sweep")
    # The order of the trials is set: a long first trial and three one-epoch ones.
    study = optuna.create_study(study_name=study_name, storage=url)
    for epochs in (200, 1, 1, 1):
        study.enqueue_trial({"trainer.max_epochs": epochs})
    process = _start(tmp_path, *_launcher(partition, unique("rnnexp-optuna")), "hparams_search=toy_optuna",
                     "hydra.sweeper.params=null", "trainer.max_epochs=choice(1,200)", "hydra.sweeper.n_trials=4",
                     "hydra.sweeper.n_jobs=2", f"hydra.sweeper.storage={url}", f"hydra.sweeper.study_name={study_name}",
                     "callbacks=none", "test=false", "+trainer.limit_val_batches=1")
    sweep = tmp_path / "sweep"
    # Asynchronous: trial 2 starts as soon as trial 1 is done, while trial 0 still trains.
    wait_for(lambda: (sweep / "2" / ".hydra" / "hydra.yaml").exists() or process.poll() is not None,
             timeout=240, what="the third trial to start")
    assert process.poll() is None, _finish(process)
    assert not (sweep / "0" / "metrics.json").exists()
    subprocess.run(["scancel", _job_id(sweep / "0")], check=True)
    _finish(process)

    trials = optuna.load_study(study_name=study_name, storage=url).trials
    assert [t.state for t in trials] == [TrialState.FAIL] + [TrialState.COMPLETE] * 3
    assert "CANCELLED" in trials[0].user_attrs["error"]
    assert trials[2].datetime_start < trials[0].datetime_complete


def test_a_job_signalled_before_preemption_saves_is_requeued_and_ends_as_if_never_stopped(tmp_path, partition):
    # Two identical jobs: job 0 gets SLURM's warning signal at its 8th step, job 1 runs through. The job
    # asks for the signal itself and waits for it (tests/helpers/slurm_signal.py): a scancel from here
    # raced with a job of a few seconds.
    process = _start(tmp_path, *_launcher(partition, unique("rnnexp-requeue")), "seed=7,7", "trainer.max_epochs=3",
                     "callbacks.resume_checkpoint.every_n_train_steps=5",
                     "+callbacks.signal._target_=tests.helpers.slurm_signal.SignalFromInside",
                     "+callbacks.signal.at_step=8", "+callbacks.signal.job_num=0")
    _finish(process)
    run = tmp_path / "sweep" / "0"
    job = _job_id(run)

    assert _scontrol(job)["Restarts"] == "1"
    log = (run / "train.log").read_text()
    saved = re.search(r"Saved (\S+resume\.ckpt) at step (\d+)", log)
    assert saved and int(saved.group(2)) == 8, log[-3000:]   # saved on the signal, not the periodic one (5, 10)
    assert f"Restoring states from the checkpoint path at {saved.group(1)}" in log
    assert len(list((run / ".hydra").glob("resumed_*"))) == 1   # requeued with resume=<run dir>
    assert _metrics(run) == _metrics(tmp_path / "sweep" / "1")


def test_a_terminated_async_sweep_cancels_its_running_slurm_jobs_and_fails_their_trials(tmp_path, partition):
    """SIGTERM to a sweep whose two trials train on SLURM: both jobs are cancelled on the cluster,
    both trials are FAILED in the study (marked as cancelled, so a rerun replaces them), and the
    command says so and exits 143."""
    import signal
    import time

    url, study_name, name = f"sqlite:///{tmp_path / 'study.db'}", unique("slurm-abort"), unique("rnnexp-abort")
    process = _start(tmp_path, *_launcher(partition, name), "hparams_search=toy_optuna", "hydra.sweeper.params=null",
                     "trainer.max_epochs=choice(300,301)", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2",
                     f"hydra.sweeper.storage={url}", f"hydra.sweeper.study_name={study_name}",
                     "callbacks=none", "test=false", "+trainer.limit_val_batches=1")
    sweep = tmp_path / "sweep"

    def running() -> list:
        out = subprocess.run(["squeue", "-h", "-n", name, "-t", "RUNNING", "-o", "%i"], capture_output=True, text=True).stdout
        return out.split()

    # Both trials train: their run directories exist and the cluster runs both jobs.
    wait_for(lambda: (all((sweep / n / ".hydra" / "hydra.yaml").exists() for n in "01") and len(running()) == 2)
             or process.poll() is not None, timeout=240, what="both trials to run on SLURM")
    assert process.poll() is None, _finish(process)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, (out + err)[-4000:]
    assert re.search(r"Sweep terminated \(SIGTERM\): cancelled SLURM jobs \S+ \S+; trials 0, 1 marked FAILED", out + err), \
        (out + err)[-4000:]
    deadline = time.monotonic() + 60
    while running() and time.monotonic() < deadline:
        time.sleep(1)
    assert running() == []
    trials = optuna.load_study(study_name=study_name, storage=url).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
    assert all("cancelled" in t.user_attrs and "error" not in t.user_attrs for t in trials)
