"""``hydra/sweeper=rnnexp_optuna`` as a drop-in for Hydra's official ``hydra-optuna-sweeper``.

The apps in tests/apps are the official plugin's examples (sphere, two objectives, a custom
search space) with only the sweeper's name changed; they contain no rnnexp code and run in
milliseconds, so each sweep here costs the start of a Python process (Hydra, Optuna, SQLite)
and a few jobs: 10-40 s each on the shared 2-core machine, so most are marked slow.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from optuna.trial import TrialState

from hydra_plugins.rnnexp_optuna_sweeper import drivers, inflight
from hydra_plugins.rnnexp_optuna_sweeper.samplers import build_pruner, build_sampler
from hydra_plugins.rnnexp_optuna_sweeper.space import distribution, grid_points
from hydra_plugins.rnnexp_optuna_sweeper.study import SweepStudy
from rnnexp.errors import ConfigError
from tests.helpers import ROOT

APPS = ROOT / "tests" / "apps"


def _app(tmp_path: Path, script: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, str(APPS / script), "-m", f"hydra.sweep.dir={tmp_path / 'sweep'}", *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)


def _ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]


def _study(tmp_path: Path, name: str):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'sweep' / 'optuna.db'}")


def _compose(*overrides: str, conf: str = "conf"):
    with initialize_config_dir(config_dir=str(APPS / conf), version_base=None):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=True)


# ---- the config schema and the grammar ----

def test_the_schema_has_the_official_keys_and_defaults():
    from hydra_plugins.rnnexp_optuna_sweeper.config import RnnexpOptunaSweeperConf

    schema = RnnexpOptunaSweeperConf()
    official = {"direction": "minimize", "storage": None, "study_name": None, "n_trials": 20, "n_jobs": 2,
                "max_failure_rate": 0.0, "params": None, "custom_search_space": None}
    assert {k: getattr(schema, k) for k in official} == official
    assert schema.defaults == [{"sampler": "auto"}]  # TPE for one objective, NSGA-II for several
    cfg = _compose(conf="custom-search-space")
    assert cfg.hydra.runtime.choices["hydra/sweeper/sampler"] == "auto"
    assert cfg.hydra.sweeper.sampler._target_ == "optuna.samplers.TPESampler" and cfg.hydra.sweeper.sampler.seed == 123


@pytest.mark.parametrize("name,cls", [("auto", "TPESampler"), ("tpe", "TPESampler"), ("random", "RandomSampler"),
                                      ("cmaes", "CmaEsSampler"), ("nsgaii", "NSGAIISampler"), ("qmc", "QMCSampler"),
                                      ("grid", "GridSampler")])
def test_each_sampler_of_the_group_builds_its_optuna_sampler(name, cls):
    if name == "qmc":
        pytest.importorskip("scipy", reason="optuna's QMCSampler needs scipy")
    cfg = _compose(f"hydra/sweeper/sampler={name}", "hydra.sweeper.sampler.seed=3")
    sampler = build_sampler(cfg.hydra.sweeper.sampler, name, ["minimize"], grid=lambda: {"x": [1, 2]})
    assert type(sampler) is getattr(optuna.samplers, cls)


def test_several_objectives_default_to_nsga2_and_an_explicit_tpe_stays():
    cfg = _compose("hydra/sweeper/sampler=auto")
    spec = cfg.hydra.sweeper.sampler
    assert isinstance(build_sampler(spec, "auto", ["minimize"]), optuna.samplers.TPESampler)
    assert isinstance(build_sampler(spec, "auto", ["minimize", "maximize"]), optuna.samplers.NSGAIISampler)
    assert isinstance(build_sampler(spec, "tpe", ["minimize", "maximize"]), optuna.samplers.TPESampler)


@pytest.mark.slow
def test_motpe_is_refused_naming_its_replacement(tmp_path):
    result = _app(tmp_path, "sphere.py", "hydra/sweeper/sampler=motpe")
    assert result.returncode != 0
    assert "MOTPESampler was removed in Optuna 4.0; use hydra/sweeper/sampler=tpe" in result.stderr


def _dist(text: str):
    return distribution(OverridesParser.create().parse_override(f"x={text}"))


@pytest.mark.parametrize("text,kind,low,high,log", [
    ("int(interval(-3, 3))", optuna.distributions.IntDistribution, -3, 3, False),
    ("tag(log, int(interval(1, 5)))", optuna.distributions.IntDistribution, 1, 5, True),
    ("interval(1, 5)", optuna.distributions.FloatDistribution, 1.0, 5.0, False),   # interval() is floats
    ("tag(log, interval(1e-4, 1e-1))", optuna.distributions.FloatDistribution, 1e-4, 1e-1, True),
])
def test_intervals_mean_what_they_mean_in_the_official_plugin(text, kind, low, high, log):
    dist = _dist(text)
    assert type(dist) is kind and (dist.low, dist.high, dist.log) == (low, high, log)


@pytest.mark.parametrize("text,choices", [("shuffle(range(1, 3))", [1, 2]), ("shuffle(choice(a, b))", ["a", "b"])])
def test_shuffle_stays_categorical(text, choices):
    dist = _dist(text)
    assert isinstance(dist, optuna.distributions.CategoricalDistribution) and sorted(dist.choices) == choices


def test_int_interval_gives_the_job_integers():
    # What a sampled int(interval()) becomes in the job's override: an int, never 1.1788...
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    sweep = SweepStudy(study, None, n_trials=5, space={"x": _dist("int(interval(-3, 3))")}, fixed=[])
    for trial, overrides in sweep.ask(5):
        value = OverridesParser.create().parse_override(overrides[0]).value()
        assert type(value) is int and -3 <= value <= 3


def test_a_grid_has_exactly_the_points_of_its_space():
    space = {"x": _dist("range(-5.5, 5.5, step=0.5)"), "y": _dist("choice(-5, 0, 5)")}
    grid = grid_points(space)
    assert grid["x"] == pytest.approx([-5.5 + 0.5 * i for i in range(22)]) and grid["y"] == [-5, 0, 5]
    with pytest.raises(ConfigError, match="a grid needs discrete values"):
        grid_points({"x": _dist("interval(0, 1)")})


def test_pruning_is_refused_for_several_objectives():
    assert isinstance(build_pruner(None, ["minimize", "minimize"]), optuna.pruners.NopPruner)
    with pytest.raises(ConfigError, match="Optuna prunes single-objective studies only"):
        build_pruner({"_target_": "optuna.pruners.MedianPruner"}, ["minimize", "minimize"])


# ---- the official examples, unchanged but for the sweeper's name ----

def test_the_sphere_example_runs_a_grid_and_leaves_optimization_results(tmp_path):
    # The example's own grid (66 points) cut to 4 trials; the study name is the config's.
    result = _app(tmp_path, "sphere.py", "hydra.sweeper.n_trials=3")
    _ok(result)
    trials = pd.read_csv(tmp_path / "sweep" / "trials.csv")
    assert len(trials) == 3 and set(trials.state) == {"COMPLETE"}
    assert trials.value.tolist() == pytest.approx((trials.params_x ** 2 + trials.params_y ** 2).tolist())
    results = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    best = trials.loc[trials.value.idxmin()]
    assert results == {"name": "optuna", "best_params": {"x": best.params_x, "y": int(best.params_y)},
                       "best_value": best.value}
    assert len(_study(tmp_path, "sphere").trials) == 3


@pytest.mark.slow
def test_a_grid_enumerates_exactly_its_points_and_stops(tmp_path):
    # 3 x 2 points; n_trials=20 becomes 6, as in the official plugin; every point once.
    result = _app(tmp_path, "sphere.py", "hydra.sweeper.params=null", "x=choice(-1,0,1)", "y=range(0,2)",
                  "hydra.sweeper.study_name=null")
    _ok(result)
    trials = _study(tmp_path, "sphere").trials  # the study name defaults to the app's job name
    assert sorted((t.params["x"], t.params["y"]) for t in trials) == sorted(itertools.product([-1, 0, 1], [0, 1]))


def test_two_objectives_leave_the_pareto_front(tmp_path):
    result = _app(tmp_path, "multi-objective.py", "hydra.sweeper.n_trials=4")
    _ok(result)
    sweep = tmp_path / "sweep"
    trials = pd.read_csv(sweep / "trials.csv")
    x, y = trials.params_x, trials.params_y
    assert trials.values_0.tolist() == pytest.approx((4 * x ** 2 + 4 * y ** 2).tolist())
    assert trials.values_1.tolist() == pytest.approx(((x - 5) ** 2 + (y - 5) ** 2).tolist())
    # The front by brute force: the trials no other trial dominates (both objectives minimized).
    points = list(zip(trials.number, trials.values_0, trials.values_1))
    front = {n for n, a, b in points
             if not any(c <= a and d <= b and (c, d) != (a, b) for _, c, d in points)}
    assert set(trials.number[trials.pareto_front]) == front
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["name"] == "optuna" and results["solutions"] == results["best_trials"]
    by_number = trials.set_index("number")
    assert sorted(tuple(s["values"]) for s in results["solutions"]) == sorted(
        (by_number.values_0[n], by_number.values_1[n]) for n in front)
    assert "system_attrs_NSGAIISampler:generation" in trials.columns  # the config's nsgaii
    assert (sweep / "pareto_front.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_a_wrong_number_of_returned_values_is_a_failed_trial(tmp_path):
    result = _app(tmp_path, "sphere.py", "hydra.sweeper.n_trials=2", "hydra.sweeper.direction=[minimize,maximize]",
                  "hydra/sweeper/sampler=random")
    assert result.returncode != 0
    assert "not a list of 2 numbers (one per direction)" in result.stderr


@pytest.mark.slow
def test_a_custom_search_space_adds_its_parameters(tmp_path):
    result = _app(tmp_path, "custom-search-space-objective.py", "hydra.sweeper.n_trials=3")
    _ok(result)
    for trial in _study(tmp_path, "custom-search-space").trials:
        p = trial.params
        assert abs(p["z"] - p["x"]) <= 0.5 and 0.0 <= p["w"] <= 1.0
        assert trial.value == pytest.approx(p["w"] ** 2 + p["x"] ** 2 + p["y"] ** 2 + p["z"] ** 2)
    results = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert set(results["best_params"]) == {"x", "y", "z", "w"}


@pytest.mark.slow
def test_a_sweep_without_parameters_is_refused(tmp_path):
    result = _app(tmp_path, "sphere.py", "hydra.sweeper.params=null")
    assert result.returncode != 0 and "the sweep has no parameters" in result.stderr
    assert not (tmp_path / "sweep" / "0").exists()


# ---- failures and exit codes ----

@pytest.mark.slow
def test_the_first_failing_batch_stops_the_sweep_and_exits_non_zero(tmp_path):
    # The official semantics: max_failure_rate per batch of n_jobs trials, 0.0 by default.
    result = _app(tmp_path, "sphere.py", "+error=true", "hydra.sweeper.n_jobs=2", "hydra.sweeper.max_failure_rate=0.5",
                  "hydra/sweeper/sampler=random")
    assert result.returncode != 0
    assert "sweep aborted: 2 of 2 trials of a batch failed, more than hydra.sweeper.max_failure_rate=0.5" in result.stderr
    trials = pd.read_csv(tmp_path / "sweep" / "trials.csv")
    assert len(trials) == 2 and set(trials.state) == {"FAIL"}


@pytest.mark.slow
@pytest.mark.parametrize("rate,code", [(0.5, 0), (0.4, 1)])
def test_a_batch_at_the_failure_rate_goes_on_and_above_it_stops(tmp_path, rate, code):
    # One batch of the two grid points, one of which (x > 0) fails: a failure rate of 1/2.
    result = _app(tmp_path, "sphere.py", "hydra.sweeper.params=null", "x=choice(-1,1)", "y=0", "+fail_above=0",
                  "hydra.sweeper.n_jobs=2", f"hydra.sweeper.max_failure_rate={rate}")
    assert result.returncode == code, (result.stdout + result.stderr)[-3000:]
    trials = _study(tmp_path, "sphere").trials
    assert sorted((t.params["x"], t.state) for t in trials) == [(-1, TrialState.COMPLETE), (1, TrialState.FAIL)]
    assert ("sweep aborted: 1 of 2 trials of a batch failed" in result.stderr) == bool(code)


@pytest.mark.slow
def test_a_sweep_whose_every_trial_failed_exits_non_zero(tmp_path):
    result = _app(tmp_path, "sphere.py", "+error=true", "hydra.sweeper.n_trials=3", "hydra.sweeper.max_failure_rate=1.0")
    assert result.returncode != 0
    assert "every trial of the sweep failed (3); last error: RuntimeError: cfg.error is True" in result.stderr


@pytest.mark.slow
def test_the_rnnexp_cli_says_it_in_one_line_with_exit_code_2(tmp_path):
    from tests.helpers import run_cli

    result = run_cli("-m", "hparams_search=toy_optuna", "debug=limit", "trainer.max_epochs=1", "callbacks=none",
                     "test=false", "hydra.sweeper.n_trials=2", "hydra.sweeper.params=null", "optimizer.lr=choice(-1.0,-2.0)",
                     f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: every trial of the sweep failed (2); last error:" in result.stderr


class _Jobs:
    """An in-process launcher whose jobs ``failing`` raise and the others return 1.0."""

    def __init__(self, failing):
        self.failing, self.launched = set(failing), []

    def launch(self, overrides, initial_job_idx):
        returns = []
        for number in range(initial_job_idx, initial_job_idx + len(overrides)):
            self.launched.append(number)
            ret = JobReturn(status=JobStatus.FAILED if number in self.failing else JobStatus.COMPLETED)
            ret.return_value = RuntimeError(f"job {number}") if number in self.failing else 1.0
            returns.append(ret)
        return returns


@pytest.mark.parametrize("failing,rate,launched", [
    ({1}, 0.5, [0, 1, 2, 3]),      # 1 of 2 in the first batch: at the rate, the sweep goes on
    ({1}, 0.4, [0, 1]),            # above it: the first batch is the last
    ({0, 1, 2, 3}, 0.99, [0, 1]),  # 2 of 2
    ({0, 1, 2, 3}, 1.0, [0, 1, 2, 3]),
])
def test_the_failure_rate_is_checked_per_batch_of_n_jobs(failing, rate, launched):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    sweep = SweepStudy(study, None, n_trials=4, space={"x": _dist("interval(0, 1)")}, fixed=[])
    jobs = _Jobs(failing)
    driver = drivers.BatchDriver(sweep, jobs, n_jobs=2, max_failure_rate=rate, validate=None)
    if launched == [0, 1]:
        with pytest.raises(drivers.SweepAborted, match=f"sweep aborted: {len(failing & {0, 1})} of 2 trials of a batch"):
            driver.run()
    else:
        driver.run()
    assert jobs.launched == launched
    assert [t.state == TrialState.FAIL for t in study.trials] == [n in failing for n in launched]
    assert (sweep.finished, len(sweep.failed)) == (len(set(launched) - failing), len(set(launched) & failing))


# ---- a stopped sweep cleans up ----

class _Launcher:
    """Jobs of a concurrent launcher: trial 0 fails at once, the others run until released."""

    def __init__(self):
        import threading

        self.release = threading.Event()

    def launch(self, overrides, initial_job_idx):
        if initial_job_idx != 0:
            self.release.wait(30)
        ret = JobReturn(status=JobStatus.FAILED if initial_job_idx == 0 else JobStatus.COMPLETED)
        ret.return_value = RuntimeError("diverged") if initial_job_idx == 0 else 1.0
        return [ret]


def test_an_aborted_async_sweep_cancels_its_slurm_jobs_and_fails_their_trials(tmp_path, monkeypatch):
    # No SLURM here: the ids submitit would hold and scancel itself are stand-ins; the study is real.
    calls = []
    monkeypatch.setattr(inflight, "unfinished_slurm_jobs", lambda: ["41_0", "42_0"])
    monkeypatch.setattr(inflight.subprocess, "run", lambda command, **kw: calls.append(command))
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")
    study = optuna.create_study(storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))
    sweep = SweepStudy(study, storage, n_trials=6, space={"x": _dist("interval(0, 1)")}, fixed=[])
    launcher = _Launcher()
    driver = drivers.AsyncDriver(sweep, launcher, n_jobs=3, max_failure_rate=0.0, validate=None)
    with pytest.raises(drivers.SweepAborted, match="1 of 3 trials of a batch failed"):
        driver.run()
    numbers, cancelled = driver.stop("cancelled", "the sweep was aborted")
    launcher.release.set()
    assert calls == [["scancel", "41_0", "42_0"]] and cancelled == ["41_0", "42_0"]
    assert numbers == [1, 2]
    states = {t.number: (t.state, t.user_attrs) for t in study.trials}
    assert states[0][0] == TrialState.FAIL and "error" in states[0][1]
    for number in (1, 2):  # no longer RUNNING; no error, so a rerun replaces them
        assert states[number][0] == TrialState.FAIL and states[number][1]["cancelled"] == "the sweep was aborted"
        assert "error" not in states[number][1]


@pytest.mark.slow
def test_sigterm_stops_the_sweep_and_fails_its_running_trial(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    env["PYTHONPATH"] = str(ROOT)
    sweep = tmp_path / "sweep"
    process = subprocess.Popen([sys.executable, str(APPS / "sphere.py"), "-m", f"hydra.sweep.dir={sweep}", "+sleep=60",
                                "hydra.sweeper.n_jobs=1"],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while not (sweep / "0" / ".hydra").exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 128 + signal.SIGTERM, out[-3000:]
    assert "Sweep terminated (SIGTERM): trials 0 marked FAILED in the study" in out
    (trial,) = _study(tmp_path, "sphere").trials
    assert trial.state == TrialState.FAIL and trial.user_attrs["cancelled"] == "the sweep was terminated (SIGTERM)"


def test_the_job_contract_is_one_function_that_is_none_outside_a_sweep(monkeypatch):
    from hydra_plugins.rnnexp_optuna_sweeper.job import TRIAL_ENV, current_trial

    monkeypatch.delenv(TRIAL_ENV, raising=False)
    assert current_trial() is None
    monkeypatch.setenv(TRIAL_ENV, "0")
    assert current_trial() is None  # no Hydra job here


@pytest.mark.parametrize("direction,expected", [("maximize", ["maximize"]), (["minimize", "maximize"], ["minimize", "maximize"])])
def test_direction_is_a_string_or_a_list(direction, expected):
    from hydra_plugins.rnnexp_optuna_sweeper.sweeper import directions_of

    assert directions_of(direction) == expected
    with pytest.raises(ConfigError, match="minimize, maximize, or a list of them"):
        directions_of(["minimize", "sideways"])
