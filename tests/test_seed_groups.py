"""Seed groups: the Student t interval, which runs are grouped, and the report of a real multi-seed run."""

from __future__ import annotations

import json
import math
import statistics

import pandas as pd
import pytest
import yaml

from rnnexp.report import report
from rnnexp.reporting.seed_groups import assign, mean_ci, t_quantile
from tests.helpers import CONF, run_cli


@pytest.mark.parametrize("dof,expected", [(1, 12.7062), (2, 4.3027), (3, 3.1824), (4, 2.7764), (9, 2.2622),
                                          (29, 2.0452), (120, 1.9799)])
def test_t_quantile_matches_the_printed_table(dof, expected):
    assert t_quantile(0.975, dof) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("p", [0.6, 0.9, 0.95, 0.975, 0.995, 0.9999])
def test_t_quantile_matches_the_closed_forms_of_one_and_two_dof(p):
    # dof=1 is Cauchy: tan(pi (p - 1/2)); dof=2: (2p - 1) / sqrt(2 p (1 - p)).
    assert t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-10)
    assert t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-10)


def test_t_quantile_tends_to_the_normal_and_refuses_nonsense():
    assert t_quantile(0.975, 10**6) == pytest.approx(statistics.NormalDist().inv_cdf(0.975), abs=1e-5)
    assert t_quantile(0.5, 3) == 0.0
    for p, dof in [(0.4, 3), (1.0, 3), (0.975, 0), (0.975, 2.5)]:
        with pytest.raises(ValueError):
            t_quantile(p, dof)


def test_mean_ci_is_t_times_the_standard_error():
    mean, half, std = mean_ci([1.0, 2.0, 4.0])
    assert mean == pytest.approx(7 / 3)
    assert std == pytest.approx(math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2))
    assert half == pytest.approx(4.302653 * std / math.sqrt(3), rel=1e-6)
    assert mean_ci([0.5])[:2] == (0.5, None)  # one run: no interval
    assert mean_ci([0.3, 0.3])[1] == 0.0


def test_runs_that_differ_only_in_seed_are_grouped_and_others_are_not():
    def config(seed, lr, **extra):
        # data.seed copies the seed (data.seed: ${seed}); data.split_seed is a fixed 0, equal to one run's seed.
        return {"seed": seed, "data.seed": seed, "data.split_seed": 0, "optimizer.lr": lr, **extra}

    configs = [config(0, 0.01), config(1, 0.01), config(2, 0.01), config(0, 0.1), config(1, 0.1),
               config(1, 0.01, **{"model.hidden_size": 8}), {**config(2, 0.01), "data.split_seed": 1}]
    assert assign(configs) == [1, 1, 1, 2, 2, 3, 4]
    assert assign([{"seed": 1, "x": 1}, {"seed": 1, "x": 1}]) == [1, 1]  # a repeat of one config is one group
    assert assign([{"x": 1}, {"x": 2}]) == [1, 2]  # no seed key at all


def _make_runs(root, runs):
    """Hand-made run directories: {name: (seed, lr, metrics or None for a run that stopped early)}."""
    for name, (seed, lr, metrics) in runs.items():
        run = root / name
        (run / "csv").mkdir(parents=True)
        config = {"seed": seed, "data": {"seed": seed}, "optimizer": {"lr": lr}, "optimized_metric": "val/acc",
                  "paths": {"output_dir": str(run)}}
        (run / "config.yaml").write_text(yaml.safe_dump(config))
        pd.DataFrame({"epoch": [0], "step": [3], "val/acc": [0.1]}).to_csv(run / "csv" / "metrics.csv", index=False)
        if metrics:
            (run / "metrics.json").write_text(json.dumps(metrics))
    return root


def test_report_gives_each_group_its_mean_and_interval(tmp_path):
    acc = {1: 0.80, 2: 0.86, 3: 0.83}
    runs = {f"{i}": (seed, 0.01, {"val/acc": acc[seed], "test/acc": acc[seed] - 0.01}) for i, seed in enumerate(acc)}
    runs["3"] = (1, 0.1, {"val/acc": 0.9, "test/acc": 0.88})
    runs["4"] = (2, 0.1, None)  # unfinished: in the group, not in its statistics
    files = report(_make_runs(tmp_path / "sweep", runs), tmp_path / "report")

    assert pd.read_csv(files["csv"])["seed_group"].tolist() == [1, 1, 1, 2, 2]
    stats = pd.read_csv(files["seed_groups"]).set_index(["seed_group", "metric"])
    first = stats.loc[(1, "val/acc")]
    values = list(acc.values())
    mean, std = sum(values) / 3, statistics.stdev(values)
    assert (first["n"], first["seeds"], first["runs"]) == (3, "1 2 3", "0 1 2")
    assert first["mean"] == pytest.approx(mean) and first["std"] == pytest.approx(std)
    assert first["ci95"] == pytest.approx(4.302653 * std / math.sqrt(3), rel=1e-6)
    assert (first["ci95_low"], first["ci95_high"]) == pytest.approx((mean - first["ci95"], mean + first["ci95"]))
    assert first["optimizer.lr"] == 0.01 and first["not_complete"] == 0
    second = stats.loc[(2, "val/acc")]
    assert (second["n"], second["mean"], second["seeds"], second["not_complete"]) == (1, 0.9, "1", 1)
    assert pd.isna(second["ci95"]) and pd.isna(second["t"])

    markdown = files["markdown"].read_text()
    section = markdown.split("## Seed groups")[1]
    # Best group first (val/acc is maximised): lr=0.1 (0.9, one run) before lr=0.01.
    assert "| 2 | 0.1 | 1 (no interval) | 1 | 0.88 | 0.9 |" in section
    assert f"| 1 | 0.01 | 3 | 1 2 3 | {mean - 0.01:.4g} ± {first['ci95']:.2g} | {mean:.4g} ± {first['ci95']:.2g} |" in section
    html = files["html"].read_text()
    assert "<h2>Seed groups</h2>" in html and f"{mean:.4g} ± {first['ci95']:.2g}" in html
    assert html.count("<table class='runs'>") == 1  # the seed groups' table is not sorted by the runs' script


def test_no_section_when_every_config_is_unique(tmp_path):
    runs = {str(i): (1, lr, {"val/acc": 0.5}) for i, lr in enumerate([0.01, 0.1])}
    files = report(_make_runs(tmp_path / "sweep", runs), tmp_path / "report")
    assert "Seed groups" not in files["markdown"].read_text() and "Seed groups" not in files["html"].read_text()
    assert "seed_group" not in files["markdown"].read_text()
    assert pd.read_csv(files["seed_groups"])["n"].tolist() == [1, 1]


def test_the_seeds_shortcut_sweeps_seeds_1_to_3_and_the_command_line_wins():
    from hydra import compose, initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["hparams_search=seeds"], return_hydra_config=True)
    assert cfg.hydra.sweeper._target_.endswith("BasicSweeper")
    params = [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()]
    parser = OverridesParser.create()

    def jobs(*command_line):  # what BasicSweeper.sweep launches: config params, then the command line
        (batch,) = BasicSweeper.split_arguments(parser.parse_overrides([*params, *command_line]), None)
        return batch

    assert jobs() == [["seed=1"], ["seed=2"], ["seed=3"]]
    assert [j[0] for j in jobs("seed=range(1,6)")] == [f"seed={s}" for s in range(1, 6)]
    assert len(jobs("optimizer.lr=0.01,0.1")) == 6


@pytest.mark.slow
def test_a_real_two_seed_multirun_and_its_report(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli("-m", "seed=1,2", "debug=limit", "trainer.max_epochs=2", "trainer.limit_train_batches=2",
                     "trainer.limit_val_batches=1", "callbacks=none", "test=false",
                     "trainer.enable_progress_bar=false", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    result = run_cli(str(sweep), cwd=tmp_path, module="rnnexp.report")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "## Seed groups" in result.stdout

    out = sweep / "report"
    table = pd.read_csv(out / "runs.csv")
    assert table["seed"].tolist() == [1, 2] and table["seed_group"].tolist() == [1, 1]
    losses = [json.loads((sweep / str(job) / "metrics.json").read_text())["val/loss"] for job in (0, 1)]
    stats = pd.read_csv(out / "seed_groups.csv").set_index("metric")
    loss = stats.loc["val/loss"]
    assert (loss["n"], loss["seeds"]) == (2, "1 2")
    assert loss["mean"] == pytest.approx(sum(losses) / 2)
    # n=2: t_{0.975,1} = 12.706 times s/sqrt(2) = |a - b| / 2.
    assert loss["ci95"] == pytest.approx(12.706205 * abs(losses[0] - losses[1]) / 2, rel=1e-6)
    assert "## Seed groups" in (out / "runs.md").read_text()
    assert "<h2>Seed groups</h2>" in (out / "report.html").read_text()
