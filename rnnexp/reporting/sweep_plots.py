"""Parameter importances and parallel coordinates of an Optuna study, as PNG files.

Drawn by Optuna's own ``optuna.visualization.matplotlib`` (importances by its fANOVA
evaluator, no scikit-learn needed), from a study object or from the storage URL a sweep used,
so the plots can be made while workers still run, or later from the database alone:

    python -m rnnexp.reporting.sweep_plots sqlite:///outputs/train/multiruns/<date>/optuna.db <out dir> [study name]

The sweeper writes them into the sweep directory at the end of a sweep; ``rnnexp.report`` can
call :func:`write_sweep_plots` for its report folder.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, Optional

log = logging.getLogger(__name__)

FILES = {"importances": "param_importances.png", "parallel": "parallel_coordinates.png"}


def load_study(study_or_storage: Any, study_name: Optional[str] = None):
    import optuna

    if not isinstance(study_or_storage, str):
        return study_or_storage
    if study_name is None:
        names = optuna.get_all_study_names(study_or_storage)
        if len(names) != 1:
            raise ValueError(f"{study_or_storage} holds {len(names)} studies ({', '.join(names)}): name one")
        study_name = names[0]
    return optuna.load_study(study_name=study_name, storage=study_or_storage)


def write_sweep_plots(study_or_storage: Any, out_dir, study_name: Optional[str] = None,
                      target_name: str = "Objective Value") -> Dict[str, Path]:
    """Write the plots a study supports into ``out_dir``; return {kind: path}.

    ``target_name``: the optimized metric's name for the axes (e.g. ``val/loss``).

    Importances need two complete trials and a parameter that varies; parallel coordinates one
    complete trial. A plot that cannot be drawn yet is skipped with a log line, never an error.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only; also on machines without a display
    import matplotlib.pyplot as plt
    import optuna
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as oplt

    study = load_study(study_or_storage, study_name)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    varying = {k for t in complete for k in t.params if len({repr(u.params.get(k)) for u in complete}) > 1}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: Dict[str, Path] = {}
    plots = {"importances": (oplt.plot_param_importances, len(complete) >= 2 and varying),
             "parallel": (oplt.plot_parallel_coordinate, len(complete) >= 1)}
    for kind, (plot, possible) in plots.items():
        if not possible:
            log.info("No %s plot yet: too few complete trials (%d) or no parameter varies", kind, len(complete))
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            axes = plot(study, target_name=target_name)
        figure = axes.figure
        figure.set_size_inches(max(6.4, 1.2 * len(varying) + 3), 4.8)
        figure.tight_layout()
        path = out / FILES[kind]
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written[kind] = path
    return written


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: python -m rnnexp.reporting.sweep_plots <storage URL> <out dir> [study name]")
    for name, path in write_sweep_plots(sys.argv[1], sys.argv[2], *sys.argv[3:]).items():
        print(f"{name}: {path}")
