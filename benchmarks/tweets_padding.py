"""``data.batching=tweets``: padded positions and epoch time, random batches vs length buckets.

    .venv/bin/python benchmarks/tweets_padding.py [--batches 40] [--data /work/shared/data/tweets]

The padded fraction is exact over a whole training epoch (batch 64, the real file's training
split). The epoch time is estimated from ``--batches`` batches drawn at random positions of
each epoch's batch list (the same positions for both), each a full training step of the
cs20_tweets model (one-hot, GRU [128, 256], packed by the backbone, Adam), times the number of
batches in the epoch. Random and bucket steps alternate, so both see the same machine load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rnnexp.data.collate import collate_sequences  # noqa: E402
from rnnexp.data.tweets import TweetsDataModule  # noqa: E402
from rnnexp.models.nets.losses import sequence_loss  # noqa: E402
from rnnexp.models.nets.sequence_model import SequenceModel  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=64)
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
    times = {m: [] for m in epochs}
    for k in positions.tolist():
        for mode in epochs:
            batch = collate_sequences([samples[i] for i in epochs[mode][k]])
            start = time.perf_counter()
            logits, _ = nets[mode](batch["inputs"], batch["lengths"])
            loss = sequence_loss(logits, batch["targets"])
            opts[mode].zero_grad()
            loss.backward()
            opts[mode].step()
            times[mode].append(time.perf_counter() - start)
    epoch = {m: statistics.mean(t) * len(epochs[m]) for m, t in times.items()}
    for mode in epochs:
        print(f"{mode:6s}: {1000 * statistics.median(times[mode]):6.1f} ms/batch (median), "
              f"estimated epoch {epoch[mode]:6.1f} s")
    print(f"bucket speed-up per epoch: {epoch['random'] / epoch['bucket']:.2f}x "
          f"(threads={torch.get_num_threads()}, {args.batches} sampled batches each)")


if __name__ == "__main__":
    main()
