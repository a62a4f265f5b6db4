"""Reading finished runs and sweeps back: tables, seed-group intervals, plots and the HTML page.

``trials`` reads what a sweep directory says of its trials, ``seed_groups`` the Student t
intervals over seeds, ``plots`` and ``sweep_plots`` the figures, ``html`` the self-contained page;
:mod:`rnnexp.report` is the command that puts them together. Works from the files runs leave
(config.yaml, metrics.json, csv/metrics.csv, trials.csv), so it needs no model code.

Imports nothing of rnnexp but :mod:`rnnexp.errors`: a report can be made on a machine that
only has the run directories.
"""
