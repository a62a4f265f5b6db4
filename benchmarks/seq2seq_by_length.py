"""Exact-match accuracy against source length for trained encoder-decoders, greedy and beam search.

    python benchmarks/seq2seq_by_length.py outputs/seq2seq_reverse/runs/<run> \\
        outputs/seq2seq_reverse_noattn/runs/<run> --beam 5 --png docs/img/seq2seq_reverse_by_length.png

Each run directory's ``config.yaml`` rebuilds its data (the same seeded test split) and its best
checkpoint (``checkpoints/epoch*.ckpt``) is decoded on the test split, greedily and with the beam.
Prints a Markdown table (accuracy per length bin and overall) and draws one line per run and decoding.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Tuple

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

import _repo  # noqa: F401  (the repo root on sys.path: benchmarks/_repo.py)
from rnnexp.models.tasks.seq2seq import Seq2Seq


def evaluate(run: Path, beam: int, bins: int) -> Tuple[str, Dict[str, Dict[int, float]], Dict[str, float]]:
    cfg = OmegaConf.load(run / "config.yaml")
    data = instantiate(cfg.data)
    best = sorted((run / "checkpoints").glob("epoch*.ckpt"))[-1]
    model = Seq2Seq.load_from_checkpoint(best, map_location="cpu").eval()
    pairs = data.pairs["test"]
    width = -(-max(len(s) for s, _ in pairs) // bins)
    by_length: Dict[str, Dict[int, float]] = {}
    overall: Dict[str, float] = {}
    for name, size in (("greedy", 1), (f"beam {beam}", beam)):
        hits, counts = defaultdict(int), defaultdict(int)
        for start in range(0, len(pairs), 250):
            chunk = pairs[start : start + 250]
            batch = data.samples["test"][start : start + 250]
            inputs = torch.nn.utils.rnn.pad_sequence([b["inputs"] for b in batch], batch_first=True)
            lengths = torch.tensor([len(b["inputs"]) for b in batch])
            with torch.no_grad():
                outputs = model.translate(inputs, lengths, beam_size=size)
            for (source, target), output in zip(chunk, outputs):
                key = (len(source) - 1) // width
                hits[key] += output == target
                counts[key] += 1
        by_length[name] = {k: hits[k] / counts[k] for k in sorted(counts)}
        overall[name] = sum(hits.values()) / sum(counts.values())
    label = f"{cfg.task_name} (attention={cfg.model.attention})"
    return label, by_length, overall | {"bin_width": width}


def main(argv: List[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--bins", type=int, default=6)
    parser.add_argument("--png", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results = [evaluate(run, args.beam, args.bins) for run in args.runs]
    width = results[0][2]["bin_width"]
    keys = sorted({k for _, by, _ in results for d in by.values() for k in d})
    header = [f"{k * width + 1}-{(k + 1) * width}" for k in keys]
    print("| model | decoding | " + " | ".join(header) + " | all |")
    print("|---|---|" + "---|" * (len(header) + 1))
    for label, by, overall in results:
        for name, accs in by.items():
            cells = [f"{accs.get(k, float('nan')):.3f}" for k in keys]
            print(f"| {label} | {name} | " + " | ".join(cells) + f" | {overall[name]:.4f} |")
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        for label, by, _ in results:
            for name, accs in by.items():
                ax.plot([(k + 0.5) * width for k in accs], list(accs.values()), marker="o",
                        linestyle="-" if name == "greedy" else "--", label=f"{label}, {name}")
        ax.set_xlabel("source length (bin centre)")
        ax.set_ylabel("exact-match accuracy (test)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        args.png.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.png, dpi=100)
        print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
