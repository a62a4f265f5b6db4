"""python -m rnnexp.report on a real two-job multirun."""

from __future__ import annotations

import json

import pandas as pd
import yaml
import pytest

from rnnexp.cli import run_app
from rnnexp.report import main, report
from tests.conftest import run_cli


@pytest.mark.slow
def test_report_of_a_two_job_multirun(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli("-m", "optimizer.lr=0.01,0.05", "debug=limit", "trainer.limit_train_batches=3",
                     "trainer.enable_progress_bar=false", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    files = report(sweep, tmp_path / "report")
    for name in ["runs.csv", "runs.md", "learning_curves.png", "sweep.png", "report.html"]:
        assert (tmp_path / "report" / name).stat().st_size > 0, name
    table = pd.read_csv(files["csv"])
    assert table["run"].astype(str).tolist() == ["0", "1"]
    assert table["optimizer.lr"].tolist() == [0.01, 0.05]  # the one config difference
    assert "seed" not in table.columns and "paths.output_dir" not in table.columns
    assert table["status"].tolist() == ["complete", "complete"]
    for job in (0, 1):
        metrics = json.loads((sweep / str(job) / "metrics.json").read_text())
        assert table.loc[job, "val/loss"] == pytest.approx(metrics["val/loss"])
    html = (tmp_path / "report" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "optimizer.lr" in html
    assert "| 0 | 0.01 |" in (tmp_path / "report" / "runs.md").read_text()


def test_a_missing_directory_is_one_line_and_exit_code_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")  # run_app sets it to 1 for the rest of the process
    with pytest.raises(SystemExit) as exit_info:
        run_app(lambda: main([str(tmp_path / "nope")]))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "nope is not a directory" in err and len(err.splitlines()) == 1


def test_a_directory_without_runs_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")
    with pytest.raises(SystemExit):
        run_app(lambda: main([str(tmp_path)]))
    assert "no runs under" in capsys.readouterr().err


def test_report_of_runs_with_different_keys_and_one_that_stopped_early(tmp_path):
    # Hand-made run directories (no training): run "b" lacks a config key and never wrote metrics.json.
    runs = {"a": ({"model": {"cell": "lstm", "extra": 1}, "optimized_metric": "val/loss"}, {"val/loss": 0.5}),
            "b": ({"model": {"cell": "gru"}, "optimized_metric": "val/loss"}, None),
            "c": ({"model": {"cell": "gru", "extra": 2}, "optimized_metric": "val/loss"}, {"val/loss": 0.7})}
    for name, (config, metrics) in runs.items():
        run = tmp_path / "sweep" / name
        (run / "csv").mkdir(parents=True)
        (run / "config.yaml").write_text(yaml.safe_dump(config))
        last = 0.3 if name == "b" else 0.8
        pd.DataFrame({"epoch": [0, 1], "step": [4, 9], "val/loss": [0.9, last]}).to_csv(run / "csv" / "metrics.csv",
                                                                                       index=False)
        if metrics:
            (run / "metrics.json").write_text(json.dumps(metrics))

    files = report(tmp_path / "sweep", tmp_path / "report")
    table = pd.read_csv(files["csv"])
    assert table["status"].tolist() == ["complete", "unfinished", "complete"]
    assert table["val/loss"].tolist() == [0.5, 0.3, 0.7]  # b: its last logged value
    assert table["model.extra"].isna().tolist() == [False, True, False]
    assert {"learning_curves", "sweep", "html"} <= set(files)
    # The best complete run, not b (its 0.3 is the value of a run that stopped early).
    assert "Best run: a (val/loss=0.5; model.cell=lstm" in (tmp_path / "report" / "report.html").read_text()
