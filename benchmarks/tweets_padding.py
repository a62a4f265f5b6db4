"""``data.batching=tweets``: padded positions and epoch time, random batches vs length buckets.

    .venv/bin/python benchmarks/tweets_padding.py [--batches 40] [--data /work/shared/data/tweets]

The padded fraction is exact over a whole training epoch (batch 64, the real file's training
split). The epoch time is estimated from ``--batches`` batches drawn at random positions of
each epoch's batch list (the same positions for both), each a full training step of the
cs20_tweets model (one-hot, GRU [128, 256], packed by the backbone, Adam), timed ``--repeats``
times (median per batch); the mean over the sampled batches times the number of batches in the
epoch. After ``--warmup`` untimed steps of each, random and bucket steps alternate, each first
in every other pair, so both see the same machine load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
import _repo  # noqa: E402,F401  (the repo root on sys.path: benchmarks/_repo.py)

from rnnexp.data.collate import collate_sequences  # noqa: E402
from rnnexp.data.tweets import TweetsDataModule  # noqa: E402
from rnnexp.models.nets.losses import sequence_loss  # noqa: E402
from rnnexp.models.nets.sequence_model import SequenceModel  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps of each mode first")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps of each sampled batch (median)")
    parser.add_argument("--data", default=os.environ.get("RNNEXP_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    args = parser.parse_args()
    dm = TweetsDataModule(data_dir=str(Path(args.data) / "tweets"), download=False, batching="tweets")
    dm.setup()
    samples = dm.tweet_samples("train")
    lengths = [len(s["inputs"]) for s in samples]
    epochs = {mode: [b.tolist() for b in dm.tweet_batches("train", args.batch_size, mode, True).batches()]
              for mode in ("random", "bucket")}
    for mode, batches in epochs.items():
        valid = sum(lengths[i] for b in batches for i in b)
        total = sum(len(b) * max(lengths[i] for i in b) for b in batches)
        print(f"{mode:6s}: {len(batches)} batches, padded positions {100 * (1 - valid / total):5.2f}%")

    torch.manual_seed(0)
    vocab = len(dm.vocab)
    nets = {m: SequenceModel(vocab, vocab, many_to_one=False, cell="gru", hidden_sizes=[128, 256]) for m in epochs}
    opts = {m: torch.optim.Adam(n.parameters(), 3e-4) for m, n in nets.items()}
    positions = torch.randperm(len(epochs["random"]), generator=torch.Generator().manual_seed(1))[: args.batches]

    def step(mode: str, k: int) -> float:
        batch = collate_sequences([samples[i] for i in epochs[mode][k]])
        start = time.perf_counter()
        logits, _ = nets[mode](batch["inputs"], batch["lengths"])
        loss = sequence_loss(logits, batch["targets"])
        opts[mode].zero_grad()
        loss.backward()
        opts[mode].step()
        return time.perf_counter() - start

    # Warm-up, untimed: the first steps pay for allocations and kernel selection.
    for k in range(args.warmup):
        for mode in epochs:
            step(mode, k)
    times = {m: {k: [] for k in positions.tolist()} for m in epochs}
    for r in range(args.repeats):
        for n, k in enumerate(positions.tolist()):
            # Alternate which mode goes first, so neither always runs right after the other.
            for mode in (("random", "bucket") if (n + r) % 2 == 0 else ("bucket", "random")):
                times[mode][k].append(step(mode, k))
    # Each sampled batch's median over the repeats (a step slowed by another process on the shared
    # cores does not move it), then their mean times the epoch's batches: bucket batches differ in
    # length, so the mean, not a median over batches, estimates the epoch.
    per_batch = {m: [statistics.median(t) for t in ts.values()] for m, ts in times.items()}
    epoch = {m: statistics.mean(t) * len(epochs[m]) for m, t in per_batch.items()}
    for mode in epochs:
        print(f"{mode:6s}: {1000 * statistics.median(per_batch[mode]):6.1f} ms/batch (median), "
              f"estimated epoch {epoch[mode]:6.1f} s")
    print(f"bucket speed-up per epoch: {epoch['random'] / epoch['bucket']:.2f}x (threads={torch.get_num_threads()}, "
          f"{args.batches} sampled batches each, median of {args.repeats} steps, after {args.warmup} warm-up)")


if __name__ == "__main__":
    main()
