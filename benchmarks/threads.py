"""Fit time with 1 and 2 torch threads (and ``threads=auto``), on an idle machine and beside a busy process.

    python benchmarks/threads.py                      # the default toy run (python train.py)
    python benchmarks/threads.py --repeats 3 -- experiment=mnist_row_lstm paths.data_dir=../shared/data \\
        trainer.max_epochs=1 trainer.limit_train_batches=60 trainer.limit_val_batches=2 test=false

Each setting runs ``python train.py threads=<n> <overrides>`` in a subprocess, alternating
settings within each repeat so machine noise hits all of them alike, and reads ``fit_seconds``
from the run's ``metrics.json``. "busy" starts one process spinning on a core (as another user's
job would) for the duration of the run. Prints medians and the ratio to ``threads=1``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPIN = "while True: pass"


def fit_seconds(threads: str, overrides, busy: bool) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = str(ROOT)
    spinner = subprocess.Popen([sys.executable, "-c", SPIN]) if busy else None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            command = [sys.executable, str(ROOT / "train.py"), f"threads={threads}", f"hydra.run.dir={tmp}/run",
                       "logger=none", *overrides]
            subprocess.run(command, env=env, cwd=ROOT, check=True, capture_output=True)
            return json.loads((Path(tmp) / "run" / "metrics.json").read_text())["fit_seconds"]
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", nargs="+", default=["1", "2", "auto"])
    parser.add_argument("overrides", nargs="*", help="train.py overrides (after --)")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; overrides: {' '.join(args.overrides) or '(none)'}")
    for busy in (False, True):
        times = {t: [] for t in args.threads}
        for _ in range(args.repeats):
            for threads in args.threads:
                times[threads].append(fit_seconds(threads, args.overrides, busy))
        base = statistics.median(times[args.threads[0]])
        for threads, values in times.items():
            median = statistics.median(values)
            print(f"{'busy' if busy else 'idle'}  threads={threads:<5} fit {median:7.2f} s (median of {len(values)}; "
                  f"{', '.join(f'{v:.2f}' for v in values)})  ratio to threads={args.threads[0]}: {median / base:.2f}")


if __name__ == "__main__":
    main()
