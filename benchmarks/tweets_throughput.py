"""Training characters per second: ``experiment=cs20_tweets`` under Lightning vs a plain-PyTorch loop.

    .venv/bin/python benchmarks/tweets_throughput.py [--steps 200] [--data /work/shared/data/tweets]

The rnnexp side is the preset's composed config built by ``rnnexp.train.build`` and fitted by
a real Trainer (CSV logger, checkpointing, LR monitor, throughput callback, gradient clipping
at norm 1, state carried across windows; validation off, progress bar off). The reference is
what a user writes by hand: one-hot characters into ``nn.GRU(V, 128)`` and ``nn.GRU(128, 256)``,
``nn.Linear`` to the vocabulary, Adam with the preset's settings (3e-4, fused), ``clip_grad_norm_``,
the state detached between windows. After every Lightning step a callback runs one reference step on the same batch
(its own loader over the same streams, checked equal to Lightning's batch off both clocks;
the script stops with an error if any differs), so both see the same load on the shared cores; the
callback's time is taken out of Lightning's clock. ``--bare`` puts the plain model in a bare
Trainer instead: Lightning's own floor on this harness. Prints median chars/s and the ratio, by
wall clock and by CPU time; with ``--threads 1`` the CPU-time ratio barely moves when other
jobs share the cores, so it is the figure to trust on a busy machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Tuple

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import open_dict
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
import _repo  # noqa: E402  (the repo root on sys.path: benchmarks/_repo.py)

from rnnexp.train import build  # noqa: E402


class Reference(nn.Module):
    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.gru1 = nn.GRU(vocab, 128, batch_first=True)
        self.gru2 = nn.GRU(128, 256, batch_first=True)
        self.fc = nn.Linear(256, vocab)

    def forward(self, ids, state=None):
        h1, h2 = state if state is not None else (None, None)
        out, h1 = self.gru1(F.one_hot(ids, self.vocab).float(), h1)
        out, h2 = self.gru2(out, h2)
        return self.fc(out), (h1.detach(), h2.detach())


class BareModule(pl.LightningModule):
    """``--bare``: the reference model itself in the smallest LightningModule, under a Trainer
    with no logger and no callbacks: what Lightning's loop alone costs at this step size."""

    def __init__(self, vocab: int, adam: dict) -> None:
        super().__init__()
        self.model, self.state, self.adam = Reference(vocab), None, adam

    def training_step(self, batch, batch_idx):
        logits, self.state = self.model(batch["inputs"], self.state)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["targets"].reshape(-1))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), **self.adam)  # the preset's settings, as the reference


class Lockstep(pl.Callback):
    def __init__(self, reference: Reference, optimizer: torch.optim.Optimizer, loader, warmup: int) -> None:
        self.ref, self.batches, self.warmup = reference, iter(loader), warmup
        self.opt = optimizer  # the preset's own Adam settings (fused), as rnnexp's side runs them
        self.state = None
        self.lightning, self.plain, self.chars = [], [], 0
        self.mismatched = 0  # steps where the reference's batch was not Lightning's
        self.lightning_cpu, self.plain_cpu = [], []
        self._mark = self._mark_cpu = None

    def _reference_step(self, lightning_batch) -> Tuple[float, float]:
        """One reference step on its own next batch; (wall, CPU) seconds, the batch fetch counted
        (as it is on Lightning's side), the check that it is Lightning's batch not counted."""
        start, start_cpu = time.perf_counter(), time.process_time()
        batch = next(self.batches)
        fetched, fetched_cpu = time.perf_counter(), time.process_time()
        same = all(torch.equal(batch[k], lightning_batch[k].cpu()) for k in ("inputs", "targets"))
        self.mismatched += int(not same)
        resumed, resumed_cpu = time.perf_counter(), time.process_time()
        logits, self.state = self.ref(batch["inputs"], self.state)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["targets"].reshape(-1))
        self.opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.ref.parameters(), 1.0)
        self.opt.step()
        return ((fetched - start) + (time.perf_counter() - resumed),
                (fetched_cpu - start_cpu) + (time.process_time() - resumed_cpu))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._mark is None:
            self._mark, self._mark_cpu = time.perf_counter(), time.process_time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        lightning, lightning_cpu = time.perf_counter() - self._mark, time.process_time() - self._mark_cpu
        plain, plain_cpu = self._reference_step(batch)
        if batch_idx >= self.warmup:
            self.lightning.append(lightning)
            self.plain.append(plain)
            self.lightning_cpu.append(lightning_cpu)
            self.plain_cpu.append(plain_cpu)
            self.chars = batch["inputs"].numel()
        self._mark, self._mark_cpu = time.perf_counter(), time.process_time()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--bare", action="store_true", help="Lightning's floor: the plain model in a bare Trainer")
    parser.add_argument("--data", default=os.environ.get("RNNEXP_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for the rnnexp side, e.g. callbacks=none")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = tempfile.mkdtemp(prefix="tweets_bench_")
    cfg = _repo.compose_train([
        "experiment=cs20_tweets", f"trainer.max_steps={args.steps}", "+trainer.limit_val_batches=0",
        "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=50", *args.overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = cfg.paths.log_dir = out
        cfg.paths.data_dir = args.data
    pl.seed_everything(0)
    datamodule, model, trainer = build(cfg)
    reference_data = build(cfg)[0]
    reference_data.setup()
    torch.manual_seed(0)
    reference = Reference(model.hparams.input_size)
    lockstep = Lockstep(reference, _repo.reference_adam(cfg, reference.parameters()),
                        reference_data.train_dataloader(), args.warmup)
    if args.bare:
        model = BareModule(model.hparams.input_size, _repo.adam_settings(cfg))
        trainer = pl.Trainer(max_steps=args.steps, limit_val_batches=0, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=1.0,
                             callbacks=[lockstep])
    else:
        trainer.callbacks.append(lockstep)
    trainer.fit(model, datamodule=datamodule)

    if lockstep.mismatched:
        sys.exit(f"error: the reference trained on other batches than Lightning in {lockstep.mismatched} of "
                 f"{args.steps} steps; the comparison is void")
    lit, plain = statistics.median(lockstep.lightning), statistics.median(lockstep.plain)
    print(f"threads={torch.get_num_threads()} steps={len(lockstep.plain)} batch=64x50 chars/step={lockstep.chars}; "
          f"the same batch on both sides at all {args.steps} steps (checked)")
    print(f"plain PyTorch : {lockstep.chars / plain:9.0f} chars/s (median step {1000 * plain:.1f} ms)")
    print(f"rnnexp (PL)   : {lockstep.chars / lit:9.0f} chars/s (median step {1000 * lit:.1f} ms)")
    print(f"ratio rnnexp/plain: {plain / lit:.3f} (medians); totals {sum(lockstep.plain) / sum(lockstep.lightning):.3f}")
    cpu_lit, cpu_plain = statistics.median(lockstep.lightning_cpu), statistics.median(lockstep.plain_cpu)
    print(f"CPU time per step: plain {1000 * cpu_plain:.1f} ms, rnnexp {1000 * cpu_lit:.1f} ms; "
          f"ratio {cpu_plain / cpu_lit:.3f} (medians); totals {sum(lockstep.plain_cpu) / sum(lockstep.lightning_cpu):.3f}")


if __name__ == "__main__":
    main()
