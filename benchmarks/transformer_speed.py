"""Training-step CPU time of experiment=tweets_transformer against experiment=tweets_lstm_large,
the two models as their presets build them (95-symbol vocabulary, batch 64, each preset's
window: 128 and 100 characters), one torch thread, steps alternating between the two.
Prints the median CPU seconds per step and characters per CPU second of each, and their ratio:
what "equal CPU time" means in characters read.

    python benchmarks/transformer_speed.py [--steps 9 --vocab 95]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra.utils import instantiate

import _repo  # noqa: E402  (the repo root on sys.path: benchmarks/_repo.py)

ROOT = Path(__file__).resolve().parents[1]


def preset(name: str, vocab: int):
    cfg = _repo.compose_train([f"experiment={name}"])
    model = instantiate(cfg.model, input_size=vocab, num_classes=vocab, input_kind="tokens", target_kind="next_token")
    optimizer = instantiate(cfg.optimizer)(model.optimizer_parameters())  # no schedule: the LR does not change the time
    return model.net.train(), optimizer, int(cfg.data.batch_size), int(cfg.data.num_steps)


def step(net, optimizer, batch: int, steps: int, vocab: int) -> float:
    x, y = torch.randint(2, vocab, (batch, steps)), torch.randint(2, vocab, (batch, steps))
    start = time.process_time()
    logits, _ = net(x)
    loss = F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=9, help="steps of each (the first is a warm-up)")
    parser.add_argument("--vocab", type=int, default=95)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    runs = {name: preset(name, args.vocab) for name in ("tweets_transformer", "tweets_lstm_large")}
    times = {name: [] for name in runs}
    for _ in range(args.steps):
        for name, (net, optimizer, batch, steps) in runs.items():
            times[name].append(step(net, optimizer, batch, steps, args.vocab))
    speed = {}
    for name, (net, _, batch, steps) in runs.items():
        median = statistics.median(times[name][1:])
        speed[name] = batch * steps / median
        params = sum(p.numel() for p in net.parameters())
        print(f"{name}: {params:,} parameters, {batch}x{steps} chars, {median:.3f} CPU s/step, {speed[name]:,.0f} chars per CPU s")
    print(f"transformer / LSTM characters per CPU second: {speed['tweets_transformer'] / speed['tweets_lstm_large']:.3f}")


if __name__ == "__main__":
    main()
