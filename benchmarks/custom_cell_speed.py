"""Forward + backward time of the TorchScript RNN cell (rnnexp.models.nets.scripted_rnn.ScriptedRNN,
used for elu/softplus/softsign/relu6/sigmoid) against torch's fused nn.RNN, same sizes
and weights, tanh in both so they compute the same thing. The two alternate, and the
figure is the ratio of medians (the machine is shared: absolute times drift, ratios less).

    python benchmarks/custom_cell_speed.py [--batch 64 --steps 50 --input 32 --hidden 128 --repeats 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import _repo  # noqa: F401  (the repo root on sys.path: benchmarks/_repo.py)
from rnnexp.models.nets.scripted_rnn import ScriptedRNN


def time_once(module: nn.Module, x: torch.Tensor) -> float:
    start = time.perf_counter()
    out, h = module(x)
    (out.square().mean() + h.square().mean()).backward()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--input", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()

    torch.manual_seed(0)
    fused = nn.RNN(args.input, args.hidden, num_layers=args.layers, batch_first=True)
    scripted = ScriptedRNN(args.input, args.hidden, num_layers=args.layers, nonlinearity="tanh")
    scripted.load_state_dict(fused.state_dict())
    x = torch.randn(args.batch, args.steps, args.input)
    assert torch.allclose(fused(x)[0], scripted(x)[0], atol=1e-5)
    for _ in range(3):  # warm-up: TorchScript profiles and optimises on the first calls
        time_once(fused, x), time_once(scripted, x)

    times = {"fused nn.RNN": [], "TorchScript cell": []}
    for _ in range(args.repeats):
        times["fused nn.RNN"].append(time_once(fused, x))
        times["TorchScript cell"].append(time_once(scripted, x))
    print(f"batch {args.batch}, steps {args.steps}, input {args.input}, hidden {args.hidden}, layers {args.layers}, "
          f"threads {torch.get_num_threads()}, forward+backward, median of {args.repeats}")
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, value in medians.items():
        print(f"  {name:18s} {value * 1e3:8.2f} ms")
    print(f"  ratio (TorchScript / fused): {medians['TorchScript cell'] / medians['fused nn.RNN']:.2f}x")


if __name__ == "__main__":
    main()
