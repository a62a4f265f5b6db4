"""Training-step time per preset: bf16-mixed rnnexp vs fp32 rnnexp vs plain-PyTorch loops, periodic costs included.

    python benchmarks/bf16_throughput.py [--presets ...] [--interval 100] [--repeats 2] [--warmup 5]

For each preset and precision (``32-true``, ``bf16-mixed``), the preset's composed config is built
by ``rnnexp.train.build`` and fitted by a real Trainer (checkpointing, CSV logger, LR monitor and
gradient clipping as the preset has them; validation and the progress bar off). After every
Lightning step a callback runs one step of a plain PyTorch loop of the same model, written by
hand, in the same precision (``torch.autocast`` for the LSTM; for the GRU, which CPU autocast
does not cover, bf16 copies of the weights via ``functional_call``, as a user would write it),
on its own loader over the same data.

What is timed: every step after ``--warmup``, for ``--interval`` steps, where ``--interval`` is the
resume checkpoint's ``every_n_train_steps`` (the preset's, 100, unless given: a shorter one is a
short run and says so), so each measured window holds exactly one fsynced resume checkpoint,
the periodic cost a user's run pays. Totals, not medians, in both process CPU time (what the
other jobs on a shared machine disturb least) and wall time (which includes the fsync wait).
Configurations are interleaved: the runs go fp32, bf16, fp32, bf16, ... (``--repeats`` of each),
and the ratios printed last are those of the totals over all repeats: the figures to quote.
With one torch thread. A precision with no kernel on this CPU (oneDNN has no bf16 LSTM without
AVX-512 BF16 / AMX) is reported as such.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Dict

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
PRECISIONS = ("32-true", "bf16-mixed")


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
    """A hand-written training loop: autocast, cross-entropy, backward, clip at norm 1, Adam (the
    preset's settings, fused as rnnexp runs it: ``_repo.reference_adam``)."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, datamodule, bf16: bool) -> None:
        self.model, self.bf16, self.datamodule = model, bf16, datamodule
        self.optimizer = optimizer
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
    """One plain step after every Lightning step; both clocks in process CPU time and wall time.
    Appended last, so the step's other callbacks (the resume checkpoint among them) are on rnnexp's clock."""

    def __init__(self, plain: Plain, warmup: int) -> None:
        self.plain, self.warmup = plain, warmup
        self.totals = {"rnnexp_cpu": 0.0, "plain_cpu": 0.0, "rnnexp_wall": 0.0, "plain_wall": 0.0}
        self.steps = 0
        self._mark = None

    @staticmethod
    def _now():
        return time.process_time(), time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._mark is None:
            self._mark = self._now()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        cpu, wall = self._now()
        ours = (cpu - self._mark[0], wall - self._mark[1])
        self.plain.step()
        cpu2, wall2 = self._now()
        if trainer.global_step > self.warmup:
            self.steps += 1
            for side, (c, w) in (("rnnexp", ours), ("plain", (cpu2 - cpu, wall2 - wall))):
                self.totals[f"{side}_cpu"] += c
                self.totals[f"{side}_wall"] += w
        self._mark = self._now()


def plain_model(preset: str, vocab: int) -> nn.Module:
    return {"cs20_tweets": lambda: CS20(vocab), "tweets_lstm_large": lambda: LargeLSTM(vocab),
            "mnist_row_lstm": RowLSTM}[preset]()


def measure(preset: str, precision: str, steps: int, warmup: int, data_dir: str) -> Dict[str, float]:
    with tempfile.TemporaryDirectory() as out:
        overrides = [f"trainer.precision={precision}", f"trainer.max_steps={warmup + steps}", "test=false",
                     "+trainer.limit_val_batches=0", "trainer.enable_progress_bar=false",
                     f"callbacks.resume_checkpoint.every_n_train_steps={steps}"]
        if preset in LANGUAGE_MODELS:  # text samples are a validation-end callback: not part of a training step
            overrides.append("callbacks.samples=null")
        cfg = preset_config(preset, overrides, data_dir, out)
        pl.seed_everything(0)
        datamodule, model, trainer = build(cfg)
        reference_data = build(cfg)[0]
        reference_data.setup("fit")
        torch.manual_seed(0)
        network = plain_model(preset, model.hparams.input_size)
        plain = Plain(network, _repo.reference_adam(cfg, network.parameters()), reference_data, precision == "bf16-mixed")
        lockstep = Lockstep(plain, warmup)
        trainer.callbacks.append(lockstep)
        # The measured steps warmup+1 .. warmup+steps hold step `steps` (a multiple of the interval).
        trainer.fit(model, datamodule=datamodule)
        saved = (Path(out) / "checkpoints" / "resume.ckpt").is_file()
    return {**lockstep.totals, "steps": lockstep.steps, "resume_saved": saved}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--interval", type=int, default=None,
                        help="resume checkpoint every N steps and N measured steps (default: the preset's, 100)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each precision, interleaved")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--data", default=DEFAULT_DATA)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for preset in args.presets:
        interval = args.interval or int(preset_config(preset, [], args.data, "/tmp").callbacks.resume_checkpoint
                                        .every_n_train_steps)
        sums = {p: {} for p in PRECISIONS}
        failed = {}
        for repeat in range(args.repeats):
            for precision in PRECISIONS:  # interleaved: fp32, bf16, fp32, bf16, ...
                if precision in failed:
                    continue
                try:
                    result = measure(preset, precision, interval, args.warmup, args.data)
                except RuntimeError as exc:  # no kernel for this precision here
                    failed[precision] = str(exc).split(". ")[0][:100]
                    print(f"{preset} {precision}: does not run on this CPU ({failed[precision]})", flush=True)
                    continue
                print(preset, precision, f"repeat {repeat + 1}:", {k: round(v, 3) if isinstance(v, float) else v
                                                                  for k, v in result.items()}, flush=True)
                for key, value in result.items():
                    if isinstance(value, float) or key == "steps":
                        sums[precision][key] = sums[precision].get(key, 0) + value
        rows.append((preset, interval, sums, failed))
    print(f"\ntotals per training step over {args.repeats} interleaved run(s) of each precision, each run "
          "<interval> steps holding one resume checkpoint; 1 torch thread; ms per step; ratios > 1: the first is faster")
    print(f"{'preset':<18} {'interval':>8} {'clock':>5} {'fp32 rnnexp':>11} {'fp32 plain':>10} {'bf16 rnnexp':>11} "
          f"{'bf16 plain':>10} {'bf16/fp32 rnnexp':>16} {'rnnexp/plain fp32':>17} {'rnnexp/plain bf16':>17}")
    for preset, interval, sums, failed in rows:
        f, b = sums["32-true"], sums["bf16-mixed"]
        for clock in ("cpu", "wall"):
            ms = lambda r, side: 1000 * r[f"{side}_{clock}"] / r["steps"] if r else float("nan")  # noqa: E731
            ratio = lambda a, c: a / c if a == a and c == c else float("nan")  # noqa: E731
            fr, fp, br, bp = ms(f, "rnnexp"), ms(f, "plain"), ms(b, "rnnexp"), ms(b, "plain")
            print(f"{preset:<18} {interval:>8} {clock:>5} {fr:11.1f} {fp:10.1f} {br:11.1f} {bp:10.1f} "
                  f"{ratio(fr, br):16.3f} {ratio(fp, fr):17.3f} {ratio(bp, br):17.3f}")
        for precision, why in failed.items():
            print(f"{preset:<18} {precision}: no kernel on this CPU ({why})")


if __name__ == "__main__":
    main()
