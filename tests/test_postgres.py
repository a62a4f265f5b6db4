"""Optuna studies shared through a real PostgreSQL server (a throwaway one: tests/helpers/services.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from scripts import kill_switch
from tests.helpers import ROOT, run_cli
from tests.helpers.services import storage_override, unique
from tests.helpers.sweeps import FAST, finished_trials_ok


def _worker(tmp_path: Path, url: str, study: str, name: str, seed: int, *extra: str) -> subprocess.Popen:
    command = [sys.executable, str(ROOT / "train.py"), "-m", "hparams_search=toy_optuna", *FAST,
               "trainer.max_epochs=3", storage_override(url), f"hydra.sweeper.study_name={study}",
               f"hydra.sweeper.sampler.seed={seed}", f"hydra.sweep.dir={tmp_path / name}", *extra]
    return subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_a_postgres_storage_without_its_driver_is_one_error_line(tmp_path):
    # A folder on PYTHONPATH whose psycopg cannot be imported: as if the extra were not installed.
    blocked = tmp_path / "blocked" / "psycopg"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'psycopg'\", name='psycopg')\n")
    result = run_cli("-m", "hparams_search=toy_optuna", "hydra.sweeper.storage=postgresql://me:secret@db.example/optuna",
                     f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path,
                     env={"PYTHONPATH": f"{blocked.parent}:{ROOT}"})
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "secret" not in result.stderr
    (line,) = [l for l in result.stderr.splitlines() if l.startswith("error:")]
    assert line == ('error: hydra.sweeper.storage=postgresql://me:***@db.example/optuna: install the PostgreSQL '
                    'driver: pip install -e ".[postgres]" (psycopg 3, what postgresql:// means in SQLAlchemy 2.1)')
    assert not list((tmp_path / "sweep").glob("[0-9]*"))


@pytest.mark.postgres
@pytest.mark.slow
def test_two_workers_share_a_postgres_study_and_a_third_finishes_after_one_is_killed(tmp_path, postgres_url):
    url, study_name = postgres_url, unique("test-shared")
    # Heartbeats every second: the killed worker's trial is stale 2 s after its last beat.
    beats = ["hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=2"]
    # Worker a kills itself (SIGKILL) at the start of its first trial's second epoch, after the trial
    # reported its first: a kill from outside raced with the trial ending (scripts/kill_switch.py).
    a = _worker(tmp_path, url, study_name, "a", 1, "hydra.sweeper.n_trials=4", *beats, *kill_switch.overrides("epoch_start:2"))
    b = _worker(tmp_path, url, study_name, "b", 2, "hydra.sweeper.n_trials=4", *beats)
    _, err = a.communicate(timeout=300)
    assert a.returncode == -9, err[-3000:]
    _, err = b.communicate(timeout=300)
    assert b.returncode == 0, err[-3000:]
    study = optuna.load_study(study_name=study_name, storage=url)
    killed = [t for t in study.trials if (tmp_path / "a" / str(t.number)).exists()
              and not (tmp_path / "a" / str(t.number) / "metrics.json").exists()]
    assert len(killed) == 1 and len(killed[0].intermediate_values) == 1, killed

    # A third process finishes the study: the killed trial is failed, not lost, and replaced.
    third = run_cli("-m", "hparams_search=toy_optuna", *FAST, "trainer.max_epochs=3", "hydra.sweeper.n_trials=4",
                    storage_override(url), f"hydra.sweeper.study_name={study_name}", *beats,
                    f"hydra.sweep.dir={tmp_path / 'c'}", cwd=tmp_path)
    assert third.returncode == 0, third.stderr[-3000:]
    trials = optuna.load_study(study_name=study_name, storage=url).trials
    finished = finished_trials_ok(trials, 4)
    assert trials[killed[0].number].state == TrialState.FAIL
    # Every finished trial ran in exactly one worker's sweep directory.
    ran = {t.number: [w for w in "abc" if (tmp_path / w / str(t.number)).exists()] for t in finished}
    assert all(len(where) == 1 for where in ran.values()), ran
    optuna.delete_study(study_name=study_name, storage=url)  # the session's server outlives the test
