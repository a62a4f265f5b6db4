"""Wall time of an Optuna sweep with trials in flight (async_trials, the default on submitit
launchers) against the batch-synchronous mode (ask n_jobs trials, wait for all, ask again), on
trials of uneven length. Both modes run the same trials: a RandomSampler with a fixed seed draws
the same ``trainer.max_epochs`` sequence whatever the results. The modes alternate; the figure is
the ratio of median wall times (async / sync; below 1 is faster).

    scripts/start_slurm.sh    # a local SLURM cluster (or give --launcher submitit_local)
    python benchmarks/sweep_async.py [--launcher slurm --partition local --trials 8 --jobs 2 --rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parents[1]


def sweep(mode: str, args: argparse.Namespace, folder: Path) -> tuple:
    launcher = ["hydra/launcher=slurm", f"hydra.launcher.partition={args.partition}", "hydra.launcher.cpus_per_task=1",
                "hydra.launcher.mem_gb=1"] if args.launcher == "slurm" else ["hydra/launcher=submitit_local"]
    command = [sys.executable, str(ROOT / "train.py"), "-m", "hparams_search=toy_optuna", *launcher,
               "hydra.sweeper.params=null", f"trainer.max_epochs=choice({args.epochs})",
               "hydra.sweeper.sampler=null", "hydra.sweeper.sampler={_target_: optuna.samplers.RandomSampler, seed: 0}",
               "hydra.sweeper.pruner=null", f"hydra.sweeper.n_trials={args.trials}", f"hydra.sweeper.n_jobs={args.jobs}",
               f"hydra.sweeper.async_trials={'true' if mode == 'async' else 'false'}", f"data.repeat={args.repeat}",
               "callbacks=none", "logger=none", "test=false", "trainer.enable_progress_bar=false",
               f"hydra.sweep.dir={folder}"]
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=folder.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    trials = optuna.load_study(study_name="toy_optuna", storage=f"sqlite:///{folder / 'optuna.db'}").trials
    assert len(trials) == args.trials and all(t.state.name == "COMPLETE" for t in trials), folder
    return seconds, [t.params["trainer.max_epochs"] for t in trials]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launcher", choices=["slurm", "submitit_local"], default="slurm")
    parser.add_argument("--partition", default="local")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--epochs", default="1,8", help="the choice() of trainer.max_epochs")
    parser.add_argument("--repeat", type=int, default=40, help="data.repeat: batches per epoch / 3 * 3")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    times = {"sync": [], "async": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for mode in (("sync", "async") if r % 2 == 0 else ("async", "sync")):
                seconds, epochs = sweep(mode, args, Path(tmp) / f"{mode}{r}")
                times[mode].append(seconds)
                print(f"round {r} {mode:5s}: {seconds:6.1f} s  trainer.max_epochs per trial: {epochs}", flush=True)
    sync, asynchronous = statistics.median(times["sync"]), statistics.median(times["async"])
    print(f"median wall time: sync {sync:.1f} s, async {asynchronous:.1f} s; async / sync = {asynchronous / sync:.2f}")


if __name__ == "__main__":
    main()
