"""Training-step CPU time per preset: bf16-mixed rnnexp vs fp32 rnnexp vs plain-PyTorch loops, one run.

    .venv/bin/python benchmarks/bf16_throughput.py [--presets ...] [--steps cs20_tweets=40 ...] [--warmup 5]

For each preset and precision (``32-true``, ``bf16-mixed``), the preset's composed config is built
by ``rnnexp.train.build`` and fitted by a real Trainer (checkpointing, CSV logger, LR monitor and
gradient clipping as the preset has them; validation and the progress bar off). After every
Lightning step a callback runs one step of a plain PyTorch loop of the same model, written by
hand, in the same precision (``torch.autocast`` for the LSTM; for the GRU, which CPU autocast
does not cover, bf16 copies of the weights via ``functional_call``, as a user would write it),
on its own loader over the same data. Both sides are timed in process CPU time with one torch
thread (``time.process_time``): on a shared machine wall time mostly measures the other jobs,
CPU time far less. Prints the median ms per step and the ratios (higher = rnnexp faster).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Dict, List

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

import _repo  # noqa: E402,F401  (the repo root on sys.path: benchmarks/_repo.py)

from benchmarks.mnist_common import DEFAULT_DATA, preset_config  # noqa: E402
from rnnexp.train import build  # noqa: E402

PRESETS = ("cs20_tweets", "tweets_lstm_large", "mnist_row_lstm")
LANGUAGE_MODELS = ("cs20_tweets", "tweets_lstm_large")
DEFAULT_STEPS = {"cs20_tweets": 30, "tweets_lstm_large": 15, "mnist_row_lstm": 60}


def _rnn(module: nn.Module, x, h, bf16: bool):
    """A GRU call in bf16 by hand (CPU autocast leaves nn.GRU in fp32); an LSTM goes to autocast."""
    if bf16 and not isinstance(module, nn.LSTM):
        params = {k: v.to(torch.bfloat16) for k, v in module.named_parameters()}
        return functional_call(module, params, (x.to(torch.bfloat16), None if h is None else h.to(torch.bfloat16)))
    return module(x, h)


class CS20(nn.Module):
    """One-hot characters, GRU-128, GRU-256, Linear: experiment=cs20_tweets by hand."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.gru1, self.gru2 = nn.GRU(vocab, 128, batch_first=True), nn.GRU(128, 256, batch_first=True)
        self.fc = nn.Linear(256, vocab)

    def forward(self, ids, state, bf16):
        h1, h2 = state if state is not None else (None, None)
        out, h1 = _rnn(self.gru1, F.one_hot(ids, self.vocab).float(), h1, bf16)
        out, h2 = _rnn(self.gru2, out, h2, bf16)
        return self.fc(out), (h1.float().detach(), h2.float().detach())


class LargeLSTM(nn.Module):
    """Embedding-64, 2 x LSTM-384 with dropout 0.25 between and after, Linear: tweets_lstm_large."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, 64)
        self.lstm = nn.LSTM(64, 384, num_layers=2, dropout=0.25, batch_first=True)
        self.drop, self.fc = nn.Dropout(0.25), nn.Linear(384, vocab)

    def forward(self, ids, state, bf16):
        out, (h, c) = self.lstm(self.embedding(ids), state)
        return self.fc(self.drop(out)), (h.float().detach(), c.float().detach())


class RowLSTM(nn.Module):
    """2 x LSTM-128 over 28 rows, Linear on the last step: mnist_row_lstm."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm, self.fc = nn.LSTM(28, 128, num_layers=2, batch_first=True), nn.Linear(128, 10)

    def forward(self, x, state, bf16):
        out, _ = self.lstm(x)
        return self.fc(out[:, -1]), None


class Plain:
    """A hand-written training loop: autocast, cross-entropy, backward, clip at norm 1, Adam."""

    def __init__(self, model: nn.Module, lr: float, datamodule, bf16: bool) -> None:
        self.model, self.bf16, self.datamodule = model, bf16, datamodule
        self.optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        self.batches, self.state = iter(datamodule.train_dataloader()), None

    def step(self) -> None:
        try:
            batch = next(self.batches)
        except StopIteration:
            self.batches = iter(self.datamodule.train_dataloader())
            batch = next(self.batches)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            logits, self.state = self.model(batch["inputs"], self.state, self.bf16)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["targets"].reshape(-1))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()


class Lockstep(pl.Callback):
    """One plain step after every Lightning step; both clocks in process CPU time."""

    def __init__(self, plain: Plain, warmup: int) -> None:
        self.plain, self.warmup = plain, warmup
        self.rnnexp: List[float] = []
        self.reference: List[float] = []
        self._mark = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._mark is None:
            self._mark = time.process_time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        ours = time.process_time() - self._mark
        start = time.process_time()
        self.plain.step()
        theirs = time.process_time() - start
        if batch_idx >= self.warmup:
            self.rnnexp.append(ours)
            self.reference.append(theirs)
        self._mark = time.process_time()


def plain_model(preset: str, vocab: int) -> nn.Module:
    return {"cs20_tweets": lambda: CS20(vocab), "tweets_lstm_large": lambda: LargeLSTM(vocab),
            "mnist_row_lstm": RowLSTM}[preset]()


def measure(preset: str, precision: str, steps: int, warmup: int, data_dir: str) -> Dict[str, float]:
    with tempfile.TemporaryDirectory() as out:
        overrides = [f"trainer.precision={precision}", f"trainer.max_steps={warmup + steps}", "test=false",
                     "+trainer.limit_val_batches=0", "trainer.enable_progress_bar=false"]
        if preset in LANGUAGE_MODELS:  # text samples are a validation-end callback: not part of a training step
            overrides.append("callbacks.samples=null")
        cfg = preset_config(preset, overrides, data_dir, out)
        pl.seed_everything(0)
        datamodule, model, trainer = build(cfg)
        reference_data = build(cfg)[0]
        reference_data.setup("fit")
        torch.manual_seed(0)
        plain = Plain(plain_model(preset, model.hparams.input_size), cfg.optimizer.lr, reference_data,
                      precision == "bf16-mixed")
        lockstep = Lockstep(plain, warmup)
        trainer.callbacks.append(lockstep)
        trainer.fit(model, datamodule=datamodule)
    return {"rnnexp": statistics.median(lockstep.rnnexp), "plain": statistics.median(lockstep.reference),
            "steps": len(lockstep.rnnexp)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--steps", nargs="*", default=[], help="preset=steps, e.g. cs20_tweets=50")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--data", default=DEFAULT_DATA)
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps = dict(DEFAULT_STEPS)
    steps.update({k: int(v) for k, v in (item.split("=") for item in args.steps)})
    rows = []
    for preset in args.presets:
        result = {p: measure(preset, p, steps[preset], args.warmup, args.data) for p in ("32-true", "bf16-mixed")}
        print(preset, result, flush=True)
        rows.append((preset, result))
    print("\nprocess CPU time per training step, 1 torch thread, medians (ms); ratios > 1: the first is faster")
    print(f"{'preset':<18} {'steps':>5} {'fp32 rnnexp':>11} {'fp32 plain':>10} {'bf16 rnnexp':>11} {'bf16 plain':>10}"
          f" {'bf16/fp32 rnnexp':>16} {'rnnexp/plain fp32':>17} {'rnnexp/plain bf16':>17}")
    for preset, r in rows:
        f, b = r["32-true"], r["bf16-mixed"]
        print(f"{preset:<18} {f['steps']:>5} {1000 * f['rnnexp']:11.1f} {1000 * f['plain']:10.1f} "
              f"{1000 * b['rnnexp']:11.1f} {1000 * b['plain']:10.1f} {f['rnnexp'] / b['rnnexp']:16.3f} "
              f"{f['plain'] / f['rnnexp']:17.3f} {b['plain'] / b['rnnexp']:17.3f}")


if __name__ == "__main__":
    main()
