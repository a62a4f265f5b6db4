"""Where a bf16-mixed training step of a preset spends its CPU time (torch.profiler).

    .venv/bin/python benchmarks/bf16_profile.py [--presets cs20_tweets ...] [--steps 5] [--rows 15]

Builds the preset as ``python train.py experiment=<preset> trainer.precision=bf16-mixed`` does
and fits a real Trainer for a few warm-up steps, then profiles ``--steps`` more steps and prints
the top operators by self CPU time, and the share of the step in the recurrent kernels and
matmuls against casts and copies (``aten::to``/``_to_copy``/``copy_``/``contiguous``) and the
optimizer. On a shared machine the absolute times are noisy; the shares are what to read.
"""

from __future__ import annotations

import argparse
import tempfile

import pytorch_lightning as pl
import torch
from torch.profiler import ProfilerActivity, profile

import _repo  # noqa: E402,F401  (the repo root on sys.path: benchmarks/_repo.py)

from benchmarks.mnist_common import DEFAULT_DATA, preset_config  # noqa: E402
from rnnexp.train import build  # noqa: E402

PRESETS = ("cs20_tweets", "tweets_lstm_large", "mnist_row_lstm")
KERNELS = ("lstm", "gru", "rnn", "mm", "addmm", "linear", "matmul", "bmm", "mkldnn")
CASTS = ("aten::to", "aten::_to_copy", "aten::copy_", "aten::contiguous", "aten::clone")
OPTIMIZER = ("Optimizer.step", "adam", "_foreach", "_fused")


class Profile(pl.Callback):
    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps, self.prof = warmup, steps, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            self.prof = profile(activities=[ProfilerActivity.CPU])
            self.prof.__enter__()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == self.warmup + self.steps - 1:
            self.prof.__exit__(None, None, None)
            trainer.should_stop = True


def shares(events) -> dict:
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    out = {"kernels": 0.0, "casts": 0.0}
    for e in events:
        name = e.key.lower()
        if any(k in name for k in KERNELS):
            out["kernels"] += e.self_cpu_time_total
        elif e.key in CASTS:
            out["casts"] += e.self_cpu_time_total
    return {k: v / total for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--presets", nargs="+", default=list(PRESETS))
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rows", type=int, default=15)
    parser.add_argument("--precision", default="bf16-mixed")
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for preset in args.presets:
        with tempfile.TemporaryDirectory() as out:
            cfg = preset_config(preset, ["callbacks=none", "logger=none", "test=false", "+trainer.limit_val_batches=0",
                                         "trainer.enable_progress_bar=false", "+trainer.enable_checkpointing=false",
                                         f"trainer.precision={args.precision}", *args.overrides], args.data, out)
            pl.seed_everything(0)
            datamodule, model, trainer = build(cfg)
            callback = Profile(args.warmup, args.steps)
            trainer.callbacks.append(callback)
            trainer.fit(model, datamodule=datamodule)
        events = callback.prof.key_averages()
        total_ms = sum(e.self_cpu_time_total for e in events) / 1000 / args.steps
        split = shares(events)
        print(f"\n== {preset} ({args.precision}): {total_ms:.1f} ms self CPU per step; recurrent kernels + matmuls "
              f"{100 * split['kernels']:.0f}%, casts/copies {100 * split['casts']:.0f}%")
        print(events.table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
