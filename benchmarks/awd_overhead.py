"""What the AWD-LSTM regularisers cost per training step: the preset's network with and without them.

    python benchmarks/awd_overhead.py [--steps 8] [--batch 64] [--window 100]

Builds ``experiment=tweets_awd``'s network (93 characters, as the tweets' vocabulary) twice from
the same weights: once as the preset has it, once with ``weight_drop``, ``embedding_dropout``,
``ar`` and ``tar`` at 0 (the other dropouts kept). Alternates forward + backward + Adam steps on
the same random windows, one torch thread, timed in process CPU time (on a shared machine wall
time mostly measures the other jobs), and prints the median ms per step and their ratio.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

import _repo  # noqa: E402  (the repo root on sys.path: benchmarks/_repo.py)

from rnnexp.models import SequenceModel  # noqa: E402


def network(overrides):
    cfg = _repo.compose_train(["experiment=tweets_awd", *overrides])
    return {k: v for k, v in cfg.model.items() if k not in ("_target_", "_recursive_", "optimizer", "scheduler")}


def step(net, optimizer, inputs, targets) -> float:
    start = time.process_time()
    out = net(inputs)
    logits, penalties = out.logits, out.penalties
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten()) + sum(penalties.values())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--window", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    awd = SequenceModel(93, 93, many_to_one=False, input_kind="tokens", **network([])).train()
    plain = copy.deepcopy(awd)
    plain.encoder.embedding_dropout, plain.ar, plain.tar, plain.backbone.weight_drop = 0.0, 0.0, 0.0, 0.0
    nets = {"awd": awd, "plain": plain}
    optimizers = {k: torch.optim.Adam(n.parameters(), lr=2e-3) for k, n in nets.items()}
    times = {k: [] for k in nets}
    for i in range(args.steps + 1):
        inputs = torch.randint(1, 93, (args.batch, args.window))
        targets = torch.randint(1, 93, (args.batch, args.window))
        for key in (("awd", "plain") if i % 2 else ("plain", "awd")):
            elapsed = step(nets[key], optimizers[key], inputs, targets)
            if i:  # the first round warms up
                times[key].append(elapsed)
    params = sum(p.numel() for p in awd.parameters())
    medians = {k: 1000 * statistics.median(v) for k, v in times.items()}
    print(f"tweets_awd network, {params:,} parameters, batch {args.batch} x {args.window}, {args.steps} steps each")
    print(f"  all AWD regularisers on: {medians['awd']:.0f} ms/step; off: {medians['plain']:.0f} ms/step; "
          f"ratio on/off {medians['awd'] / medians['plain']:.3f}")


if __name__ == "__main__":
    main()
