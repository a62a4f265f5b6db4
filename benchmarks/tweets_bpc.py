"""Validation bits per character reached in a fixed CPU budget.

    .venv/bin/python benchmarks/tweets_bpc.py --experiment cs20_tweets --minutes 40 --threads 1
    .venv/bin/python benchmarks/tweets_bpc.py --summarize outputs/cs20_tweets/runs/<run>   # an existing run
    .venv/bin/python benchmarks/tweets_bpc.py --experiment cs20_tweets --minutes 150 --out outputs/more \
        ckpt_path=outputs/bench_bpc/cs20_tweets/checkpoints/last.ckpt   # continue a run, same budget clock

Runs ``python train.py experiment=<name> trainer.max_time=<budget>`` (validation every epoch,
the best checkpoint tested afterwards) and prints val/bpc after each epoch, from the run's
``csv/metrics.csv``, the fit time of this sitting, and the total fitting time (training and
validation) that Lightning's ``Timer`` saved in ``last.ckpt``. A ``ckpt_path=`` continuation restores the
``Timer``, so both ``--minutes`` and that total count the earlier sittings too. Long: start it with ``nohup``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def summarize(run_dir: Path) -> None:
    rows = list(csv.DictReader(open(run_dir / "csv" / "metrics.csv")))
    print(f"{run_dir}:")
    for row in rows:
        if row.get("val/bpc"):
            print(f"  epoch {int(row['epoch']) + 1:3d}  step {int(row['step']) + 1:6d}  val/bpc {float(row['val/bpc']):.3f}")
    metrics = run_dir / "metrics.json"
    if metrics.exists():
        m = json.loads(metrics.read_text())
        print(f"  fit {m.get('fit_seconds', 0) / 60:.1f} min (this sitting); "
              f"best-checkpoint test/bpc {m.get('test/bpc', float('nan')):.3f}")
    print("  " + timer_total(run_dir / "checkpoints" / "last.ckpt"))


def timer_total(ckpt: Path) -> str:
    """The training time Lightning's ``Timer`` (present with ``trainer.max_time``) has counted,
    read from a checkpoint: all sittings of a run continued with ``ckpt_path=``, not just the last."""
    import torch

    if not ckpt.is_file():
        return f"no {ckpt}: no Timer total"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    timers = [v for k, v in state.get("callbacks", {}).items() if k == "Timer" or k.startswith("Timer{")]
    if not timers:
        return f"{ckpt.name} has no Timer state (the run had no trainer.max_time): no total"
    # Timer's "train" clock runs from the start of fit (validation inside it included) and is the
    # only one a continuation restores; its "validate" entry is the last validation loop alone.
    total = timers[0].get("time_elapsed", {}).get("train", 0.0)
    return (f"Timer in {ckpt.name} (after epoch {state.get('epoch', 0) + 1}): {total / 60:.1f} min of fitting "
            f"(training and validation, all sittings)")

def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--experiment", default="cs20_tweets")
    parser.add_argument("--minutes", type=int, default=40)
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for the run")
    parser.add_argument("--data", default=os.environ.get("RNNEXP_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--out", default="outputs/bench_bpc")
    parser.add_argument("--summarize", type=Path, default=None)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    if args.summarize:
        summarize(args.summarize)
        return
    run_dir = Path(args.out) / args.experiment
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    hours, minutes = divmod(args.minutes, 60)
    command = [sys.executable, str(ROOT / "train.py"), f"experiment={args.experiment}",
               f"paths.data_dir={args.data}", f"trainer.max_time=00:{hours:02d}:{minutes:02d}:00",
               "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}", *args.overrides]
    print(" ".join(command), flush=True)
    subprocess.run(command, env=env, check=True)
    summarize(run_dir)


if __name__ == "__main__":
    main()
