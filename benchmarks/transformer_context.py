"""One transformer checkpoint scored two ways: each window from scratch (how the transformer rows of
docs/results.md were scored before issue 27) and with context across windows (since then).

    python benchmarks/transformer_context.py <run dir>/checkpoints/<best>.ckpt [--split test]

The network, weights and characters are the same; only ``eval_stride`` differs. With a carried
state and windows as long as the context (128), ``eval_stride=context`` reads every window's new
characters after none of the preceding ones (from scratch); the run's own ``eval_stride`` (by
default ``context // 2``: each character after 64-127 preceding ones) scores it with context. Both go through ``rnnexp.models.dynamic_eval.run_stream``, the static
scoring ``python -m rnnexp.evaluate`` uses. One torch thread.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import _repo  # noqa: E402,F401  (the repo root on sys.path: benchmarks/_repo.py)

from rnnexp.evaluate import load_data, load_run_config, run_dir_of  # noqa: E402
from rnnexp.generate import load_language_model  # noqa: E402
from rnnexp.models.dynamic_eval import run_stream  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("ckpt", type=Path)
    parser.add_argument("--split", choices=["val", "test"], default="test")
    parser.add_argument("overrides", nargs="*", help="data.* / paths.* overrides of the run's config")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_language_model(str(args.ckpt))
    net = model.net
    if not hasattr(net, "eval_stride"):
        raise SystemExit(f"error: {args.ckpt} is not a transformer checkpoint (no eval_stride)")
    run_cfg = load_run_config(run_dir_of(args.ckpt), args.overrides)
    datamodule = load_data(run_cfg, model.hparams.vocab)
    loader = datamodule.val_dataloader if args.split == "val" else datamodule.test_dataloader
    results = {}
    # The run's own eval_stride (model.eval_stride; null trained as context // 2) for "with context".
    for name, stride in (("from scratch", net.context), ("with context", net.eval_stride)):
        net.eval_stride = stride
        results[name] = run_stream(net, loader(), "32-true").bpc
        print(f"{args.split} bpc {name:12s} (eval_stride={stride:3d}): {results[name]:.4f}")
    print(f"context across windows: {results['with context'] - results['from scratch']:+.4f} bpc")


if __name__ == "__main__":
    main()
