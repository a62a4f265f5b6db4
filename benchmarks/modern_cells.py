"""Training-step time (forward + backward) of minGRU, minLSTM and the LRU, each scan implementation,
against cell=lstm and cell=gru, all through RecurrentBackbone at the same hidden size; and rnnexp's
minGRU against a plain PyTorch loop of the same model (autograd through a Python loop over steps,
and the log-space parallel scan of Heinsen 2023, the usual GPU formulation, both on the same
weights). Every configuration runs once per round, in turn, so the machine's load drifts over all
of them alike; the figures are medians over rounds and ratios against cell=lstm of the same round.

    python benchmarks/modern_cells.py [--batch 64 --hidden 128 --input 1 --steps 28 128 784 4096 --rounds 5]
    python benchmarks/modern_cells.py --device cuda       # the GPU figures (benchmarks/gpu_check.py runs it too)
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, Dict, List

import torch
import torch.nn.functional as F
from torch import nn

import _repo  # noqa: F401  (the repo root on sys.path: benchmarks/_repo.py)
from rnnexp.runtime.allocator import set_allocator
from rnnexp.models.nets.backbone import RecurrentBackbone

NEW = ("mingru", "minlstm", "lru")
SCANS = ("sequential", "chunked", "parallel")


class PlainMinGRU(nn.Module):
    """minGRU as a user would write it in plain PyTorch, on rnnexp's weights (one layer)."""

    def __init__(self, rnnexp_net: RecurrentBackbone, mode: str) -> None:
        super().__init__()
        self.proj = rnnexp_net.blocks[0].cells[0].proj
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, cand = self.proj(x).chunk(2, dim=-1)
        if self.mode == "loop":
            # unbind, not z[:, t]: the backward of each index would write a whole [B, T, H] zero tensor
            z = torch.sigmoid(gate)
            h = x.new_zeros(x.shape[0], cand.shape[-1])
            outs = []
            for z_t, c_t in zip(z.unbind(1), cand.unbind(1)):
                h = (1 - z_t) * h + z_t * c_t
                outs.append(h)
            return torch.stack(outs, 1)
        # Heinsen's log-space scan (h_0 = 0): log h_t = a*_t + logcumsumexp(log b - a*)_t with
        # a* = cumsum(log(1 - z)). It needs b > 0, so the candidate goes through the paper's g.
        log_a = -F.softplus(gate)  # log(1 - z)
        log_z = -F.softplus(-gate)
        log_cand = torch.where(cand >= 0, (F.relu(cand) + 0.5).log(), -F.softplus(-cand))
        a_star = torch.cumsum(log_a, dim=1)
        return torch.exp(a_star + torch.logcumsumexp(log_z + log_cand - a_star, dim=1))


def step_time(model: Callable, x: torch.Tensor) -> float:
    if x.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = model(x)
    out = out[0] if isinstance(out, tuple) else out
    out.float().square().mean().backward()
    if x.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def models(args) -> Dict[str, Callable]:
    torch.manual_seed(0)
    out: Dict[str, Callable] = {}
    for cell in ("lstm", "gru"):
        out[cell] = RecurrentBackbone(args.input, cell=cell, hidden_size=args.hidden).to(args.device)
    for cell in NEW:
        for scan in SCANS:
            out[f"{cell}/{scan}"] = RecurrentBackbone(args.input, cell=cell, hidden_size=args.hidden,
                                                      scan=scan).to(args.device)
    out["plain minGRU loop"] = PlainMinGRU(out["mingru/sequential"], "loop")
    out["plain minGRU log-space scan"] = PlainMinGRU(out["mingru/sequential"], "log")
    return out


def main(argv: List[str] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--input", type=int, default=1)
    parser.add_argument("--steps", type=int, nargs="+", default=[28, 128, 784, 4096])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip", nargs="*", default=[], help="configurations to leave out (e.g. lstm at 4096 on a slow host)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    set_allocator("cached")  # as train.py runs (rnnexp/runtime/allocator.py)
    nets = {k: v for k, v in models(args).items() if k not in args.skip}
    print(f"device {args.device}, batch {args.batch}, hidden {args.hidden}, input {args.input}, one layer, "
          f"threads {torch.get_num_threads()}, forward+backward, median of {args.rounds} rounds")
    for steps in args.steps:
        x = torch.randn(args.batch, steps, args.input, device=args.device)
        check = nets["plain minGRU loop"](x[:, :50])
        assert torch.allclose(check, nets["mingru/sequential"](x[:, :50])[0], atol=1e-5)
        for model in nets.values():  # warm-up: TorchScript profiles and optimises on the first calls
            step_time(model, x)
            step_time(model, x)
        times: Dict[str, List[float]] = {name: [] for name in nets}
        for _ in range(args.rounds):
            for name, model in nets.items():
                times[name].append(step_time(model, x))
        med = {name: statistics.median(v) for name, v in times.items()}
        print(f"T={steps}")
        for name, value in med.items():
            ratio = statistics.median(lstm / t for lstm, t in zip(times["lstm"], times[name]))
            print(f"  {name:28s} {value * 1e3:9.1f} ms   {ratio:6.2f}x faster than lstm")
        plain = med["plain minGRU loop"] / med[f"mingru/{'sequential'}"]
        print(f"  rnnexp minGRU (sequential) vs the plain loop: {plain:.2f}x")


if __name__ == "__main__":
    main()
