"""Optuna sweeps through the repo's Hydra sweeper plugin, and the W&B sweep files."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from hydra.core.utils import JobReturn, JobStatus
from optuna.trial import TrialState

from hydra_plugins.rnnexp_optuna_sweeper.space import distribution, format_value
from hydra_plugins.rnnexp_optuna_sweeper.study import SweepStudy
from scripts import kill_switch
from tests.helpers import CONF, ROOT, compose_config, run_cli
from tests.helpers.sweeps import FAST, finished_trials_ok

def _sweep(tmp_path: Path, *args: str, name: str = "sweep"):
    result = run_cli("-m", "hparams_search=toy_optuna", *FAST, f"hydra.sweep.dir={tmp_path / name}", *args,
                     cwd=tmp_path, timeout=300)
    return result, tmp_path / name


def _study(url: str, name: str = "toy_optuna"):
    return optuna.load_study(study_name=name, storage=url)


def test_the_sweeper_plugin_is_discovered():
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    names = [p.__name__ for p in Plugins.instance().discover(Sweeper)]
    assert "RnnexpOptunaSweeper" in names


def test_a_three_trial_sweep_runs_end_to_end(tmp_path):
    result, sweep = _sweep(tmp_path, "hydra.sweeper.n_trials=3")
    assert result.returncode == 0, result.stderr[-3000:]
    trials = pd.read_csv(sweep / "trials.csv")
    assert len(trials) == 3 and set(trials.state) == {"COMPLETE"}
    assert {"params_optimizer.lr", "params_model.hidden_size", "params_cell"} <= set(trials.columns)
    for number in range(3):  # job directories are named by trial number
        assert (sweep / str(number) / "metrics.json").is_file()
    study = _study(f"sqlite:///{sweep / 'optuna.db'}")
    # The jobs reported every validation epoch to their trial: pruning is wired.
    assert all(len(t.intermediate_values) == 2 for t in study.trials)
    best = study.best_trial
    assert result.stdout.count("Best trial") == 1  # once, not logged and printed
    for plot in ("param_importances.png", "parallel_coordinates.png"):  # rnnexp.reporting.sweep_plots, from the study
        assert (sweep / plot).read_bytes().startswith(b"\x89PNG")

    # best_experiment.yaml is a working experiment preset that reproduces the best parameters.
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    shutil.copy(sweep / "best_experiment.yaml", conf / "experiment" / "best.yaml")
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=best"])
    assert cfg.optimizer.lr == pytest.approx(best.params["optimizer.lr"])
    assert cfg.model.hidden_size == best.params["model.hidden_size"]
    assert cfg.model.cell == best.params["cell"]

    # The report of the sweep: one row per trial, the metric against each swept parameter.
    from rnnexp.report import report

    files = report(sweep, tmp_path / "report")
    table = pd.read_csv(files["csv"])
    assert table["run"].tolist() == [0, 1, 2] and set(table["status"]) == {"complete"}
    assert {"model.cell", "model.hidden_size", "optimizer.lr"} <= set(table.columns)
    assert table["val/loss"].tolist() == pytest.approx([t.value for t in study.trials])
    assert "sweep" in files and files["sweep"].stat().st_size > 0


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the test asks for a trial outside the sweeper
def test_two_workers_share_one_study_and_stop_at_n_trials(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    command = [sys.executable, str(ROOT / "train.py"), "-m", "hparams_search=toy_optuna", *FAST,
               "hydra.sweeper.n_trials=3", f"hydra.sweeper.storage={url}"]
    workers = [
        subprocess.Popen([*command, f"hydra.sweep.dir={tmp_path / f'worker{i}'}", f"hydra.sweeper.sampler.seed={i}"],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err[-3000:]
    study = _study(url)
    counted = [t for t in study.trials if not t.user_attrs.get("surplus")]
    assert len(counted) == 3 and all(t.state == TrialState.COMPLETE for t in counted)
    jobs = [p for i in range(2) for p in (tmp_path / f"worker{i}").glob("[0-9]*")]
    # every trial ran once, in one of the workers
    assert sorted(int(p.name) for p in jobs) == sorted(t.number for t in counted)

    # A worker killed mid-trial (its heartbeat stopped) and one stopped with Ctrl-C (the trial
    # failed without an error) leave trials that the rerun replaces instead of counting them.
    from hydra_plugins.rnnexp_optuna_sweeper.study import open_storage

    storage = open_storage(url, heartbeat_interval=1, grace_period=1)
    killed = optuna.load_study(study_name="toy_optuna", storage=storage).ask()
    storage.record_heartbeat(killed._trial_id)
    # Its last heartbeat must be older than grace_period when the rerun looks, or it is still alive.
    time.sleep(2.5)
    stopped = _study(url).ask()
    stopped.set_user_attr("interrupted", True)
    _study(url).tell(stopped, state=TrialState.FAIL)

    # A rerun with a larger budget resumes the same study instead of starting over.
    result = run_cli("-m", "hparams_search=toy_optuna", *FAST, "hydra.sweeper.n_trials=4",
                     "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=1",
                     f"hydra.sweeper.storage={url}", f"hydra.sweep.dir={tmp_path / 'resumed'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list((tmp_path / "resumed").glob("[0-9]*"))) == 1
    trials = _study(url).trials
    assert trials[killed.number].state == TrialState.FAIL  # no longer RUNNING forever
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 4


@pytest.mark.slow
def test_a_failing_trial_is_recorded_as_failed_and_the_sweep_goes_on(tmp_path):
    # A negative learning rate makes torch.optim raise; BruteForceSampler tries every value.
    result, sweep = _sweep(tmp_path, "hydra.sweeper.n_trials=3", "hydra.sweeper.params=null",
                           "hydra.sweeper.sampler._target_=optuna.samplers.BruteForceSampler",
                           "~hydra.sweeper.sampler.n_startup_trials", "optimizer.lr=choice(0.01,-1.0,0.02)")
    assert result.returncode == 0, result.stderr[-3000:]
    trials = pd.read_csv(sweep / "trials.csv").set_index("params_optimizer.lr")
    assert trials.loc[-1.0, "state"] == "FAIL"
    assert "Invalid learning rate" in trials.loc[-1.0, "user_attrs_error"]
    assert set(trials.loc[[0.01, 0.02], "state"]) == {"COMPLETE"}
    best = yaml.safe_load((sweep / "best_experiment.yaml").read_text())
    assert best["optimizer"]["lr"] in (0.01, 0.02)


@pytest.mark.slow
def test_the_pruner_stops_a_poor_trial_after_its_first_validation(tmp_path):
    # A pruner that prunes every trial; the dict replaces the config's MedianPruner (null first, then the new one).
    result, sweep = _sweep(tmp_path, "hydra.sweeper.n_trials=1", "trainer.max_epochs=3", "hydra.sweeper.pruner=null",
                           "hydra.sweeper.pruner={_target_: optuna.pruners.ThresholdPruner, upper: 0.0}")
    assert result.returncode == 0, result.stderr[-3000:]
    (trial,) = _study(f"sqlite:///{sweep / 'optuna.db'}").trials
    assert trial.state == TrialState.PRUNED and list(trial.intermediate_values) == [0]  # 1 of 3 epochs
    assert "No trial completed" in result.stdout + result.stderr and not (sweep / "0" / "metrics.json").exists()
    assert pd.read_csv(sweep / "trials.csv").state.tolist() == ["PRUNED"]


@pytest.mark.slow
def test_too_many_failures_abort_the_sweep_with_one_line(tmp_path):
    # Hydra's default max_failure_rate=0.0 (the preset allows every failure): the first failure aborts.
    result, sweep = _sweep(tmp_path, "hydra.sweeper.n_trials=4", "hydra.sweeper.params=null",
                           "hydra.sweeper.max_failure_rate=0.0", "optimizer.lr=choice(-1.0,-2.0)")
    assert result.returncode == 2
    assert "error: sweep aborted: 1 of 1 trials of a batch failed" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(pd.read_csv(sweep / "trials.csv")) == 1


def _tell(study, trial, ret):
    return SweepStudy(study, None, n_trials=1, space={}, fixed=[]).tell(trial, ret)


@pytest.mark.parametrize("returned", [None, float("nan"), float("inf")])
def test_a_job_without_a_finite_result_is_a_failed_trial_not_a_nan(returned):
    study = optuna.create_study()
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    ret = JobReturn(status=JobStatus.COMPLETED)
    ret.return_value = returned
    _tell(study, trial, ret)
    (frozen,) = study.trials
    assert frozen.state == TrialState.FAIL and frozen.value is None
    assert "not a finite number" in frozen.user_attrs["error"]


def test_a_pruned_job_is_a_pruned_trial():
    study = optuna.create_study()
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    trial.report(0.5, step=0)
    ret = JobReturn(status=JobStatus.FAILED)
    ret.return_value = optuna.TrialPruned("pruned at epoch 0")
    _tell(study, trial, ret)
    assert study.trials[0].state == TrialState.PRUNED


@pytest.mark.parametrize("text,kind,expected", [
    ("choice(rnn,gru)", optuna.distributions.CategoricalDistribution, ["rnn", "gru"]),
    ("range(1,4)", optuna.distributions.IntDistribution, (1, 3, False)),
    ("interval(0.1,0.5)", optuna.distributions.FloatDistribution, (0.1, 0.5, False)),
    ("tag(log,interval(0.0001,0.1))", optuna.distributions.FloatDistribution, (0.0001, 0.1, True)),
    ("tag(int,interval(8,64))", optuna.distributions.IntDistribution, (8, 64, False)),
])
def test_hydra_sweep_syntax_maps_to_optuna_distributions(text, kind, expected):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    dist = distribution(OverridesParser.create().parse_override(f"key={text}"))
    assert isinstance(dist, kind)
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        assert list(dist.choices) == expected
    else:
        assert (dist.low, dist.high, dist.log) == expected


@pytest.mark.parametrize("text,values", [
    ("range(0,10,3)", [0, 3, 6, 9]),            # (stop - start) not a multiple of step: 9 is kept
    ("range(1,4)", [1, 2, 3]),
    ("range(10,0,-3)", [1, 4, 7, 10]),
    ("range(0,1,0.3)", [0.0, 0.3, 0.6, 0.9]),   # 0.9, not dropped (nor rounded down by Optuna)
    ("range(0.1,0.5,0.1)", [0.1, 0.2, 0.3, 0.4]),
])
def test_range_gives_the_values_hydra_enumerates(text, values):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    override = OverridesParser.create().parse_override(f"key={text}")
    assert sorted(override.value().range()) == pytest.approx(values)  # Hydra's own enumeration
    dist = distribution(override)
    got = [dist.low + i * dist.step for i in range(round((dist.high - dist.low) / dist.step) + 1)]
    assert got == pytest.approx(values)
    # Every value is one Optuna can sample: all of them are inside the distribution.
    assert all(dist._contains(dist.to_internal_repr(v)) for v in values)


def test_sampled_values_are_valid_overrides():
    for value in [1e-05, 0.5, 3, True, None, "gru", "a b"]:
        cfg = compose_config([f"+probe={format_value(value)}"])
        assert cfg.probe == value


SWEEP_FILES = sorted((ROOT / "sweeps").glob("*.yaml"))


def _samples(spec: dict):
    if "values" in spec:
        return list(spec["values"])
    if "value" in spec:
        return [spec["value"]]
    low, high = spec["min"], spec["max"]
    if spec.get("distribution", "").startswith("int"):
        return [low, (low + high) // 2, high]
    middle = math.sqrt(low * high) if "log" in spec.get("distribution", "") else (low + high) / 2
    return [low, middle, high]  # the middle one has many digits, as the agent passes them


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.stem)
def test_every_wandb_sweep_parameter_is_a_valid_override(path, tmp_path):
    sweep = yaml.safe_load(path.read_text())
    assert sweep["program"] == "train.py" and sweep["method"] in ("grid", "random", "bayes")
    assert sweep["command"][:3] == ["${env}", "${interpreter}", "${program}"]
    assert "${args_no_hyphens}" in sweep["command"]  # the agent's --k=v is not a Hydra override
    fixed = [a for a in sweep["command"] if not a.startswith("${")]
    base = compose_config(fixed, tmp_path)
    assert sweep["metric"]["name"] == base.optimized_metric
    assert sweep["metric"]["goal"] == ("maximize" if base.optimized_metric.endswith("acc") else "minimize")
    names = list(sweep["parameters"])
    samples = {n: _samples(sweep["parameters"][n]) for n in names}
    # Every value of every parameter at least once (one composition per value, not the product).
    rows = max(len(v) for v in samples.values())
    for row in range(rows):
        values = [samples[n][row % len(samples[n])] for n in names]
        overrides = [f"{n}={format_value(v)}" for n, v in zip(names, values)]
        cfg = compose_config(fixed + overrides, tmp_path)
        for name, value in zip(names, values):
            key = "model.cell" if name == "cell" else name
            got = cfg
            for part in key.split("."):
                got = got[part]
            assert got == value or (isinstance(value, float) and math.isclose(got, value))


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.stem)
def test_every_wandb_sweep_is_the_same_search_as_its_optuna_config(path):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    name = path.stem.replace("_wandb", "_optuna")
    optuna_cfg = yaml.safe_load((CONF / "hparams_search" / f"{name}.yaml").read_text())
    sweep = yaml.safe_load(path.read_text())
    params = optuna_cfg["hydra"]["sweeper"]["params"]
    assert set(sweep["parameters"]) == set(params)
    assert sweep["metric"]["name"] == optuna_cfg["optimized_metric"]
    assert sweep["metric"]["goal"] == optuna_cfg["hydra"]["sweeper"]["direction"]
    parser = OverridesParser.create()
    for key, text in params.items():
        dist, spec = distribution(parser.parse_override(f"{key}={text}")), sweep["parameters"][key]
        if isinstance(dist, optuna.distributions.CategoricalDistribution):
            assert list(spec["values"]) == list(dist.choices), key
        else:
            kind = "log_uniform_values" if dist.log else ("int_uniform" if isinstance(dist, optuna.distributions.IntDistribution) else "uniform")
            assert (spec["distribution"], spec["min"], spec["max"]) == (kind, dist.low, dist.high), key


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF / "hparams_search").glob("*.yaml")))
def test_every_hparams_search_composes_with_a_parseable_space(name):
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"hparams_search={name}"], return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    parser = OverridesParser.create()
    if sweeper._target_.endswith("BasicSweeper"):  # seeds: every combination, no search (tests/test_seed_groups.py)
        for key, text in sweeper.params.items():
            assert parser.parse_override(f"{key}={text}").is_discrete_sweep(), key
            assert _has(cfg, key), key
        return
    assert sweeper._target_.endswith("RnnexpOptunaSweeper")
    assert sweeper.direction == ("maximize" if cfg.optimized_metric.endswith("acc") else "minimize")
    for key, text in sweeper.params.items():
        distribution(parser.parse_override(f"{key}={text}"))
        # every swept key exists in the composed config (or is a config group)
        assert key in cfg.hydra.runtime.choices or _has(cfg, key), key


def _has(cfg, dotted: str) -> bool:
    from omegaconf import OmegaConf

    return OmegaConf.select(cfg, dotted, default="__missing__") != "__missing__"


def test_a_result_for_a_trial_another_worker_already_failed_is_dropped_not_fatal():
    study = optuna.create_study()
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    study.tell(trial, state=TrialState.FAIL)  # as fail_stale_trials does after a late heartbeat
    for status, value in [(JobStatus.COMPLETED, 0.5), (JobStatus.FAILED, ValueError("boom"))]:
        ret = JobReturn(status=status)
        ret.return_value = value
        _tell(study, trial, ret)
        assert study.trials[0].state == TrialState.FAIL


@pytest.mark.slow
def test_a_sweep_killed_mid_trial_finishes_when_the_same_command_runs_again(tmp_path):
    sweep = tmp_path / "sweep"
    # The same command twice, as a user would retype it; the study is <sweep dir>/optuna.db.
    command = [sys.executable, str(ROOT / "train.py"), "-m", "hparams_search=toy_optuna", *FAST,
               "trainer.max_epochs=3", "trainer.limit_train_batches=1.0", "hydra.sweeper.n_trials=6",
               f"hydra.sweep.dir={sweep}"]
    # The first run kills itself (SIGKILL) at the start of the third trial's second epoch, after
    # that trial reported its first: global epoch starts 3 + 3 + 2 (no pruning before trial 5). A kill
    # from outside raced with trials that last a second (CI saw the trial end before the signal).
    first = subprocess.Popen([*command, *kill_switch.overrides("epoch_start:8")], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    _, err = first.communicate(timeout=300)
    assert first.returncode == -9, err[-3000:]
    url = f"sqlite:///{sweep / 'optuna.db'}"
    (killed,) = [t for t in _study(url).trials if t.state == TrialState.RUNNING]
    assert killed.number == 2 and len(killed.intermediate_values) == 1, killed.intermediate_values

    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    trials = _study(url).trials
    finished_trials_ok(trials, 6)
    assert trials[killed.number].state == TrialState.FAIL  # not left RUNNING, not counted
    assert trials[killed.number].user_attrs["worker_gone"].endswith(f":{first.pid}")
    assert not (sweep / str(killed.number) / "metrics.json").exists()
    assert len(pd.read_csv(sweep / "trials.csv")) == 7
