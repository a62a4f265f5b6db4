"""Row MNIST (28 steps x 28 pixels), LSTM-128, Adam 1e-3, batch 128: rnnexp vs plain PyTorch.

    .venv/bin/python benchmarks/mnist_row.py                 # 5 epochs, the comparison
    .venv/bin/python benchmarks/mnist_row.py --bare          # the plain network in a bare Trainer: Lightning's floor
    .venv/bin/python benchmarks/mnist_row.py --preset-run    # the full mnist_row_lstm preset (>= 99%?)

The comparison builds ``experiment=mnist_row_lstm`` with the overrides that make it the
reference model (one layer, constant LR, no gradient clipping) and fits it with a real
Lightning Trainer, while a plain loop trains ``nn.LSTM(28, 128) + nn.Linear`` on the same
batches in lockstep (see mnist_common.py). Test accuracy is measured after every epoch on
the 10k test images, off both clocks. Prints per-epoch accuracy and cumulative seconds,
the time to 98% test accuracy on each side and the ratio.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import _repo  # noqa: E402,F401  (the repo root on sys.path: benchmarks/_repo.py)

from benchmarks.mnist_common import DEFAULT_DATA, fit_in_lockstep, median  # noqa: E402

AS_REFERENCE = ["model.num_layers=1", "schedule.scheduler=null", "trainer.gradient_clip_val=null",
                "trainer.enable_progress_bar=false", "optimizer.lr=0.001", "data.batch_size=128"]


def time_to(epochs, key_acc, key_time, target):
    for row in epochs:
        if row[key_acc] >= target:
            return row[key_time], row["epoch"]
    return float("nan"), None


def compare(args) -> None:
    lock = fit_in_lockstep("mnist_row_lstm", [*AS_REFERENCE, f"trainer.max_epochs={args.epochs}", *args.overrides],
                           args.data_dir, validate=True, bare=args.bare)
    print(f"same initial weights: {lock.same_start}; batches that differed: {lock.mismatched_batches}")
    print("epoch  rnnexp_acc  ref_acc   rnnexp_s  ref_s")
    for row in lock.epochs:
        print(f"{row['epoch']:>5}  {100 * row['rnnexp_test_acc']:9.2f}%  {100 * row['reference_test_acc']:6.2f}%"
              f"  {row['rnnexp_seconds']:8.1f}  {row['reference_seconds']:6.1f}")
    ours, our_epoch = time_to(lock.epochs, "rnnexp_test_acc", "rnnexp_seconds", args.target)
    ref, ref_epoch = time_to(lock.epochs, "reference_test_acc", "reference_seconds", args.target)
    step_ratio = median(lock.rnnexp_step_seconds) / median(lock.reference_step_seconds)
    total_ratio = lock.epochs[-1]["rnnexp_seconds"] / lock.epochs[-1]["reference_seconds"]
    print(f"time to {100 * args.target:.0f}% test accuracy: rnnexp {ours:.1f} s (epoch {our_epoch}), "
          f"reference {ref:.1f} s (epoch {ref_epoch}), ratio {ours / ref:.3f}")
    print(f"whole run (train + validation, {args.epochs} epochs): ratio {total_ratio:.3f}; "
          f"median training step: rnnexp {1000 * median(lock.rnnexp_step_seconds):.2f} ms, "
          f"reference {1000 * median(lock.reference_step_seconds):.2f} ms, ratio {step_ratio:.3f}")
    # Where the whole-run difference lies: the timed steps (the first of each epoch is not an
    # interval, so it counts with the rest), and the rest: validation, epoch ends, that first step.
    ours_steps, ref_steps = sum(lock.rnnexp_step_seconds), sum(lock.reference_step_seconds)
    ours_total, ref_total = lock.epochs[-1]["rnnexp_seconds"], lock.epochs[-1]["reference_seconds"]
    print(f"steps: rnnexp {ours_steps:.2f} s (mean {1000 * ours_steps / len(lock.rnnexp_step_seconds):.2f} ms), "
          f"reference {ref_steps:.2f} s (mean {1000 * ref_steps / len(lock.reference_step_seconds):.2f} ms), "
          f"ratio {ours_steps / ref_steps:.3f}; fit setup to the first step (sanity check included): rnnexp "
          f"{lock.setup_seconds:.2f} s; the rest (validation, epoch ends, each epoch's first step): rnnexp "
          f"{ours_total - ours_steps - lock.setup_seconds:.2f} s, reference {ref_total - ref_steps:.2f} s")


def preset_run(args) -> None:
    """The preset as a user runs it (train.py's task function), for its final accuracy and time."""
    import tempfile

    from benchmarks.mnist_common import preset_config
    from rnnexp.train import run

    with tempfile.TemporaryDirectory() as out:
        cfg = preset_config("mnist_row_lstm", ["trainer.enable_progress_bar=false", *args.overrides], args.data_dir, out)
        start = time.perf_counter()
        run(cfg)
        seconds = time.perf_counter() - start
        metrics = json.loads((Path(out) / "metrics.json").read_text())
    print(f"mnist_row_lstm {' '.join(args.overrides)}: test/acc {100 * metrics['test/acc']:.2f}% "
          f"val/acc {100 * metrics['val/acc']:.2f}% in {seconds:.0f} s (fit {metrics['fit_seconds']:.0f} s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=DEFAULT_DATA, help="the folder holding mnist/ (paths.data_dir)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--target", type=float, default=0.98)
    parser.add_argument("--bare", action="store_true",
                        help="Lightning's floor: the plain network in a bare Trainer (no validation on either side)")
    parser.add_argument("--preset-run", action="store_true", help="run the full mnist_row_lstm preset instead")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides of the rnnexp side (e.g. callbacks.throughput=null)")
    args = parser.parse_args()
    preset_run(args) if args.preset_run else compare(args)
