"""Pixel and permuted-pixel MNIST (784 steps x 1), LSTM-128, Adam 1e-3, batch 128: rnnexp vs plain PyTorch.

    .venv/bin/python benchmarks/mnist_pixel.py                    # 60 steps of each task
    .venv/bin/python benchmarks/mnist_pixel.py --steps 300 --test-images 2000

Builds ``experiment=mnist_pixel_lstm`` and ``experiment=mnist_permuted_lstm`` from their
composed Hydra configs (without gradient clipping, which the reference loop does not do)
and fits each with a real Lightning Trainer for ``--steps`` optimizer steps, while a plain
loop trains ``nn.LSTM(1, 128) + nn.Linear`` on the same batches in lockstep (see
mnist_common.py). Prints the median seconds per step on each side, the steps-per-second
ratio (rnnexp / reference), and the test accuracy both reach on ``--test-images`` test
images after the budget. A full run of these presets is GPU work (about 6 minutes per
epoch of 430 steps on 2 CPU cores).
"""

from __future__ import annotations

import argparse

import _repo  # noqa: E402,F401  (the repo root on sys.path: benchmarks/_repo.py)

from benchmarks.mnist_common import DEFAULT_DATA, fit_in_lockstep, median  # noqa: E402

AS_REFERENCE = ["trainer.gradient_clip_val=null", "trainer.enable_progress_bar=false", "optimizer.lr=0.001",
                "data.batch_size=128", "model.hidden_size=128", "model.num_layers=1", "schedule=none"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=DEFAULT_DATA, help="the folder holding mnist/ (paths.data_dir)")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--test-images", type=int, default=1000)
    parser.add_argument("--tasks", nargs="*", default=["mnist_pixel_lstm", "mnist_permuted_lstm"])
    args = parser.parse_args()
    rows = []
    for experiment in args.tasks:
        overrides = [*AS_REFERENCE, f"trainer.max_steps={args.steps}", "trainer.max_epochs=1",
                     "+trainer.limit_val_batches=0", "data.eval_batch_size=500"]
        lock = fit_in_lockstep(experiment, overrides, args.data_dir, validate=False, test_limit=args.test_images)
        ours, ref = median(lock.rnnexp_step_seconds), median(lock.reference_step_seconds)
        last = lock.epochs[-1]
        rows.append((experiment, ours, ref, last["rnnexp_test_acc"], last["reference_test_acc"], lock))
    print(f"{'experiment':<22} {'rnnexp s/step':>13} {'ref s/step':>10} {'steps/s ratio':>13} "
          f"{'rnnexp acc':>10} {'ref acc':>8}  (after {args.steps} steps, {args.test_images} test images)")
    for experiment, ours, ref, our_acc, ref_acc, lock in rows:
        print(f"{experiment:<22} {ours:13.3f} {ref:10.3f} {ref / ours:13.3f} {100 * our_acc:9.2f}% {100 * ref_acc:7.2f}%"
              f"   same start: {lock.same_start}, batches that differed: {lock.mismatched_batches}")


if __name__ == "__main__":
    main()
