"""python -m rnnexp.report on a real two-job multirun."""

from __future__ import annotations

import json
import shutil
import subprocess

import pandas as pd
import yaml
import pytest

from rnnexp.runtime.cli import run_app
from rnnexp.report import main, report
from tests.helpers import run_cli
from tests.helpers.services import unavailable


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


def _make_runs(root, runs, metric="val/loss", multirun=None):
    """Hand-made run directories: {name: (config, final metrics or None, last logged value)}."""
    for name, (config, metrics, last) in runs.items():
        run = root / name
        (run / "csv").mkdir(parents=True)
        (run / "config.yaml").write_text(yaml.safe_dump({**config, "optimized_metric": metric}))
        pd.DataFrame({"epoch": [0, 1, 2], "step": [4, 9, 14], metric: [2.0, 0.5, last]}).to_csv(
            run / "csv" / "metrics.csv", index=False)
        if metrics:
            (run / "metrics.json").write_text(json.dumps(metrics))
    if multirun is not None:
        (root / "multirun.yaml").write_text(yaml.safe_dump(multirun))
    return root


@pytest.mark.parametrize("with_direction", [True, False], ids=["multirun.yaml says maximize", "guessed from the name"])
def test_the_best_run_of_a_maximised_metric_is_the_highest(tmp_path, with_direction):
    runs = {str(i): ({"model": {"hidden_size": size}}, {"val/acc": acc}, acc) for i, (size, acc) in
            enumerate([(4, 0.7), (8, 0.9), (16, 0.8)])}
    runs["3"] = ({"model": {"hidden_size": 32}}, None, 0.95)  # higher, but it stopped early: not the best
    multirun = {"hydra": {"sweeper": {"direction": "maximize"}}} if with_direction else None
    sweep = _make_runs(tmp_path / "sweep", runs, metric="val/acc", multirun=multirun)
    files = report(sweep, tmp_path / "report")
    html = files["html"].read_text()
    assert "Best run: 1 (val/acc=0.9; model.hidden_size=8)" in html
    best_rows = [row for row in html.split("<tr") if row.startswith(" class='best")]
    assert len(best_rows) == 1 and "data-value='1'>1</td>" in best_rows[0]


def test_sweep_choices_are_categories_and_losses_log_scaled(tmp_path):
    from rnnexp.report import categorical_params
    from rnnexp.reporting.plots import wants_log_scale

    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {
        "sweeper": {"params": {"optimizer.lr": "tag(log, interval(0.0003, 0.1))", "model.hidden_size": "choice(4, 8, 64)",
                               "cell": "choice(rnn, lstm)"}},
        "overrides": {"task": ["model.dropout=0.1,0.2", "trainer.max_epochs=3", "seed=range(1,4)"]}}}))
    found = categorical_params(tmp_path)
    assert {"model.hidden_size", "model.cell", "model.dropout"} <= found
    assert not {"optimizer.lr", "trainer.max_epochs", "seed"} & found
    assert wants_log_scale("val/loss", [2.0, 1e-5]) and wants_log_scale("train/loss_epoch", [0.3])
    assert not wants_log_scale("val/acc", [0.5, 1.0]) and not wants_log_scale("val/loss", [0.0, 1.0])


def test_pruned_runs_say_pruned_and_are_marked_in_the_html_table(tmp_path):
    runs = {str(i): ({"optimizer": {"lr": lr}}, {"val/loss": v, "test/loss": v} if v else None, v or 0.4)
            for i, (lr, v) in enumerate([(0.1, 0.3), (0.01, None), (0.001, 0.2)])}
    sweep = _make_runs(tmp_path / "sweep", runs)
    pd.DataFrame({"number": [0, 1, 2], "state": ["COMPLETE", "PRUNED", "COMPLETE"],
                  "user_attrs_job_dir": [str(sweep / str(i)) for i in range(3)]}).to_csv(sweep / "trials.csv", index=False)
    files = report(sweep, tmp_path / "report")
    assert pd.read_csv(files["csv"])["status"].tolist() == ["complete", "pruned", "complete"]
    html = files["html"].read_text()
    assert "<tr class='pruned'>" in html and "stopped early" not in html
    assert "(2 complete, 1 pruned)" in html


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
# Injected into a copy of the page: sort by val/loss (a click on its header), then record the row
# order and how many images decoded, as attributes --dump-dom shows.
PROBE = """<script>
window.addEventListener("load", function () {
  var headers = Array.prototype.map.call(document.querySelectorAll("table.runs th"), function (th) { return th.textContent; });
  document.querySelectorAll("table.runs th")[headers.indexOf("val/loss")].click();
  var runs = Array.prototype.map.call(document.querySelectorAll("table.runs tbody tr"), function (tr) { return tr.cells[0].textContent; });
  var images = Array.prototype.filter.call(document.images, function (img) { return img.complete && img.naturalWidth > 0; });
  document.body.setAttribute("data-probe", runs.join(",") + "|" + images.length + "/" + document.images.length);
});
</script></body>"""


def test_report_html_in_headless_chromium_loads_without_errors_shows_the_table_and_images_and_sorts(tmp_path):
    if CHROMIUM is None:  # skipped on a machine without it; a failure in CI (RNNEXP_REQUIRE_SERVICES=1)
        unavailable("no chromium on PATH (Debian: apt-get install -y chromium)")
    runs = {str(i): ({"model": {"cell": cell}}, {"val/loss": v}, v) for i, (cell, v) in
            enumerate([("lstm", 0.3), ("gru", 0.1), ("rnn", 0.2), ("gru", 1e-4)])}
    sweep = _make_runs(tmp_path / "sweep", runs)
    files = report(sweep, tmp_path / "report")
    page = tmp_path / "probe.html"
    page.write_text(files["html"].read_text().replace("</body>", PROBE))
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0", "--dump-dom",
               page.as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []  # no script errors (nor anything else written to the console)
    assert "<table class=\"runs\"" in result.stdout and result.stdout.count("<tr class=") == 4
    assert "data-probe=\"3,1,2,0|2/2\"" in result.stdout  # sorted by val/loss; both plots decoded
