"""CPU time of real training runs with ``allocator=cached`` against glibc's defaults (``system``).

    .venv/bin/python benchmarks/allocator.py                     # pixel MNIST, row MNIST, tweets_awd
    .venv/bin/python benchmarks/allocator.py --steps 40 --repeats 3 --presets mnist_pixel_lstm

Each run is ``python train.py experiment=<preset> allocator=<a> threads=1`` for ``--steps``
training steps (no validation, no test) in a subprocess, the two settings alternating within each
repeat so machine noise hits both alike; the user and system CPU seconds come from the child's
``rusage``, so they hold on a shared machine where wall time does not. ``system`` is plain
PyTorch's behaviour, the reference. Prints the medians per preset and the ratios cached/system.
Needs the real data (``RNNEXP_DATA_DIR`` or ``--data-dir``); a preset whose data is missing is skipped.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = {"mnist": "mnist/train-images-idx3-ubyte.gz", "tweets": "tweets"}


def one_run(preset: str, allocator: str, steps: int, data_dir: Path, out: Path):
    """(user s, system s, wall s) of one training run."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env.update(PYTHONPATH=str(ROOT), WANDB_MODE="offline", RNNEXP_DATA_DIR=str(data_dir), RNNEXP_LOG_DIR=str(out))
    command = [sys.executable, str(ROOT / "train.py"), f"experiment={preset}", f"allocator={allocator}", "threads=1",
               f"++trainer.max_steps={steps}", "++trainer.limit_val_batches=0", "test=false", "optimized_metric=train/loss", "logger=none",
               "++trainer.max_time=null", "trainer.enable_progress_bar=false"]
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    done = subprocess.run(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:  # the run's own one-line error, not a bare CalledProcessError
        sys.exit(f"{preset} allocator={allocator}: {(done.stderr.strip().splitlines() or ['failed'])[-1]}")
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["mnist_pixel_lstm", "mnist_row_lstm", "tweets_awd"])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("RNNEXP_DATA_DIR", ROOT.parent / "shared" / "data")))
    args = parser.parse_args()
    print(f"{args.steps} training steps per run (plus startup), threads=1, median of {args.repeats}")
    print(f"{'preset':<20} {'allocator':<9} {'user s':>8} {'system s':>9} {'wall s':>8}")
    with tempfile.TemporaryDirectory() as out:
        for preset in args.presets:
            kind = "mnist" if preset.startswith("mnist") else "tweets"
            if not (args.data_dir / DATA[kind]).exists():
                print(f"{preset:<20} skipped: no {args.data_dir / DATA[kind]}")
                continue
            runs = {"system": [], "cached": []}
            for _ in range(args.repeats):
                for allocator in runs:
                    runs[allocator].append(one_run(preset, allocator, args.steps, args.data_dir, Path(out)))
            medians = {a: [statistics.median(r[i] for r in rs) for i in range(3)] for a, rs in runs.items()}
            for allocator, (user, system, wall) in medians.items():
                print(f"{preset:<20} {allocator:<9} {user:8.1f} {system:9.1f} {wall:8.1f}")
            (u0, s0, w0), (u1, s1, w1) = medians["system"], medians["cached"]
            print(f"{preset:<20} cached/system: CPU (user+system) {(u1 + s1) / (u0 + s0):.3f}, "
                  f"system {s1 / max(s0, 1e-9):.3f}, wall {w1 / w0:.3f}")


if __name__ == "__main__":
    main()
