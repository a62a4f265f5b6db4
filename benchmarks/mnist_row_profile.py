"""Where a row-MNIST training step's time goes: rnnexp through Lightning vs the plain loop, sampled.

    pip install py-spy
    .venv/bin/python benchmarks/mnist_row_profile.py [--batches 300] [--rate 250]

Runs ``benchmarks/mnist_row.py``'s lockstep comparison (``experiment=mnist_row_lstm`` as the
reference model, a real Trainer, the plain ``nn.LSTM`` loop stepping on the same batches inside
a callback) for one partial epoch under py-spy, a sampling profiler that does not slow the code
it samples (cProfile's per-call cost distorts exactly the small Python calls this is about).
Each sample of the main thread is put in one bucket, by the frames on its stack, and the
buckets are printed as milliseconds per step on each side: what both sides do (the LSTM's
forward and backward, the optimizer), and what only rnnexp does (its modules' Python around
the kernels, Lightning's loop and hooks, logging, epoch sums, callbacks).
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import sys, torch
sys.path.insert(0, {root!r})
torch.set_num_threads(1)
from benchmarks.mnist_common import fit_in_lockstep
from benchmarks.mnist_row import AS_REFERENCE
lock = fit_in_lockstep("mnist_row_lstm", [*AS_REFERENCE, "trainer.max_epochs=1", "+trainer.limit_train_batches={batches}",
                       "+trainer.limit_val_batches=0", "test=false", "threads=1"], {data!r}, validate=False, test_limit=1000)
print("steps", len(lock.rnnexp_step_seconds) + 1)
"""

# (bucket, substrings of which one must be on the stack), first match wins, deepest concerns first.
BUCKETS = [
    ("reference: whole step", ("Lockstep.on_train_batch_end (", "mnist_common.py")),
    ("shared: backward", ("backward (torch/_tensor.py", "_engine_run_backward")),
    ("shared: LSTM forward kernel", ("forward (torch/nn/modules/rnn.py",)),
    ("rnnexp: model Python around the kernel", ("(rnnexp/models/nets/",)),
    ("rnnexp: task step (loss, epoch sums, logging)", ("(rnnexp/models/tasks/",)),
    ("rnnexp: callbacks", ("(rnnexp/callbacks/",)),
    ("lightning: logging", ("logger_connector", "(pytorch_lightning/loggers/")),
    # Lightning's automatic optimization runs the step and backward inside optimizer.step(closure):
    # only what is left once those are taken out is the update itself.
    ("shared: optimizer update", ("step (torch/optim/adam.py", "_fused_adam", "adam (torch/optim")),
    ("data: fetch and collate", ("fetch", "_next_data", "collate")),
    ("lightning: loop, hooks, precision plugin", ("(pytorch_lightning/",)),
]


def bucket(stack: str) -> str:
    for name, needles in BUCKETS:
        if name.startswith("reference"):  # the Lockstep callback's hook, by its file
            if any(f.startswith(needles[0]) and needles[1] in f for f in stack.split(";")):
                return name
        elif any(n in stack for n in needles):
            return name
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--rate", type=int, default=250, help="samples per second")
    parser.add_argument("--data-dir", default=os.environ.get("RNNEXP_DATA_DIR") or str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--keep", help="copy py-spy's raw stacks to this file")
    args = parser.parse_args()
    if shutil.which("py-spy") is None:
        sys.exit("error: py-spy is not installed; pip install py-spy")
    with tempfile.TemporaryDirectory() as tmp:
        script, raw = Path(tmp) / "child.py", Path(tmp) / "raw.txt"
        script.write_text(CHILD.format(root=str(ROOT), batches=args.batches, data=args.data_dir))
        out = subprocess.run(["py-spy", "record", "-r", str(args.rate), "-f", "raw", "-o", str(raw), "--",
                              sys.executable, str(script)], capture_output=True, text=True, check=True).stdout
        if args.keep:
            shutil.copy(raw, args.keep)
        steps = int(next(line.split()[1] for line in out.splitlines() if line.startswith("steps ")))
        counts: collections.Counter = collections.Counter()
        for line in raw.read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            if "run_training_epoch" in stack or "training_epoch_loop.py" in stack:  # the fit's main thread
                counts[bucket(stack)] += int(n)
    per_step = {name: 1000 * n / args.rate / steps for name, n in counts.items()}
    print(f"{steps} steps, {sum(counts.values())} samples at {args.rate}/s; ms per step (sampled, wall time):")
    for name, ms in sorted(per_step.items(), key=lambda kv: -kv[1]):
        print(f"  {ms:7.2f}  {name}")
    only_rnnexp = sum(ms for name, ms in per_step.items() if not name.startswith(("shared", "reference")))
    reference = per_step.get("reference: whole step", float("nan"))
    print(f"rnnexp's own per step: {only_rnnexp:.2f} ms beyond the shared work; the plain loop's whole step: {reference:.2f} ms")


if __name__ == "__main__":
    main()
