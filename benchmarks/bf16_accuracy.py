"""Accuracy of bf16-mixed against fp32: the same preset, seed, batches and step budget, side by side.

    .venv/bin/python benchmarks/bf16_accuracy.py                       # the three presets, default budgets
    .venv/bin/python benchmarks/bf16_accuracy.py --steps cs20_tweets=300 mnist_row_lstm=800 --windows 100

For each preset the composed config (``experiment=<preset>``, as ``python train.py`` builds it)
is fitted twice by a real Trainer, ``trainer.precision=32-true`` and ``bf16-mixed``, from the
same seed for the same number of optimizer steps (``trainer.max_steps``; no validation while
fitting, no checkpoints). Each model is then validated on the whole validation split in its
own precision: val/bpc for the char LMs (every stream read as one text, state carried through
all its windows), val/acc for row MNIST. Tolerances (issue 13): 0.01 bpc, 0.1 percentage point.

``--cross`` also validates the fp32-trained weights under bf16 autocast: the difference bf16
makes to inference alone, apart from where two training trajectories drift apart.

``--windows K`` adds the long-stream check for the LSTM preset: the fp32-trained weights read K
consecutive training windows of every stream with the state carried, once in fp32 and once
under bf16 autocast; if bf16's rounding accumulated in the carried LSTM cell state, the
per-window bpc difference would grow with the window index.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from typing import Dict, List

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

import _repo  # noqa: E402,F401  (the repo root on sys.path: benchmarks/_repo.py)

from benchmarks.mnist_common import DEFAULT_DATA, preset_config  # noqa: E402
from rnnexp.models.nets.layer_state import detach_state  # noqa: E402
from rnnexp.train import build  # noqa: E402

METRIC = {"cs20_tweets": "val/bpc", "tweets_lstm_large": "val/bpc", "mnist_row_lstm": "val/acc"}
TOLERANCE = {"val/bpc": 0.01, "val/acc": 0.001}
DEFAULT_STEPS = {"cs20_tweets": 200, "tweets_lstm_large": 100, "mnist_row_lstm": 300}
PRECISIONS = ("32-true", "bf16-mixed")
QUIET = ["callbacks=none", "logger=none", "test=false", "trainer.enable_progress_bar=false",
         "+trainer.enable_checkpointing=false", "+trainer.limit_val_batches=0"]


def fit(preset: str, precision: str, steps: int, data_dir: str, seed: int, extra: List[str], cross: bool = False):
    with tempfile.TemporaryDirectory() as out:
        cfg = preset_config(preset, [*QUIET, f"trainer.precision={precision}", f"trainer.max_steps={steps}",
                                     f"seed={seed}", *extra], data_dir, out)
        pl.seed_everything(seed, workers=True)
        datamodule, model, trainer = build(cfg)
        start_cpu, start = time.process_time(), time.perf_counter()
        trainer.fit(model, datamodule=datamodule)
        fit_cpu, fit_wall = time.process_time() - start_cpu, time.perf_counter() - start
        result = {"metric": validate(model, datamodule, precision, out, METRIC[preset]), "fit_cpu": fit_cpu,
                  "fit_wall": fit_wall}
        if cross and precision == "32-true":  # the same fp32-trained weights, validated under bf16 autocast
            result["metric_bf16_eval"] = validate(model, datamodule, "bf16-mixed", out, METRIC[preset])
    return model, datamodule, result


def validate(model, datamodule, precision: str, out: str, metric: str) -> float:
    judge = pl.Trainer(precision=precision, logger=False, enable_progress_bar=False, enable_model_summary=False,
                       default_root_dir=out)
    return float(judge.validate(model, datamodule=datamodule, verbose=False)[0][metric])


@torch.no_grad()
def window_bpc(model, datamodule, windows: int, bf16: bool):
    """bpc of each of ``windows`` consecutive training windows, the state carried throughout."""
    model.eval()
    state, out, chars = None, [], 0
    loader = iter(datamodule.train_dataloader())
    for _ in range(windows):
        batch = next(loader)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits, final = model.net(batch["inputs"], None, state)
        state = detach_state(final)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), batch["targets"].reshape(-1))
        out.append(float(loss) / math.log(2))
        chars = batch["inputs"].shape[1]
    return out, chars


def long_stream(model, datamodule, windows: int) -> None:
    (fp32, chars), (bf16, _) = window_bpc(model, datamodule, windows, False), window_bpc(model, datamodule, windows, True)
    diffs = [b - a for a, b in zip(fp32, bf16)]
    tenth = max(1, windows // 10)
    print(f"long stream: {windows} windows of {chars} chars per stream, same fp32-trained weights, state carried")
    print(f"  bpc fp32 first/last {tenth}: {sum(fp32[:tenth]) / tenth:.4f} / {sum(fp32[-tenth:]) / tenth:.4f}")
    print(f"  bf16 - fp32 bpc, first {tenth} windows: {sum(diffs[:tenth]) / tenth:+.4f}; "
          f"last {tenth}: {sum(diffs[-tenth:]) / tenth:+.4f}; max |diff| {max(abs(d) for d in diffs):.4f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--presets", nargs="+", default=list(METRIC), choices=list(METRIC))
    parser.add_argument("--steps", nargs="*", default=[], help="preset=steps, e.g. cs20_tweets=300")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--windows", type=int, default=0, help="long-stream check on tweets_lstm_large (0: off)")
    parser.add_argument("--cross", action="store_true",
                        help="also validate the fp32-trained weights under bf16: the inference-only difference")
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    steps: Dict[str, int] = dict(DEFAULT_STEPS)
    steps.update({k: int(v) for k, v in (item.split("=") for item in args.steps)})

    rows = []
    for preset in args.presets:
        results = {}
        for precision in PRECISIONS:
            model, datamodule, results[precision] = fit(preset, precision, steps[preset], args.data, args.seed,
                                                        args.overrides, args.cross)
            print(f"{preset} {precision}: {results[precision]}", flush=True)
            if args.windows and preset == "tweets_lstm_large" and precision == "32-true":
                long_stream(model, datamodule, args.windows)
        rows.append((preset, results))

    print(f"\nseed {args.seed}, torch threads {args.threads}; validation on the whole val split in each run's precision")
    print(f"{'preset':<18} {'steps':>5} {'metric':<8} {'fp32':>8} {'bf16':>8} {'diff':>8} {'tol':>6}  ok   "
          f"fit CPU s fp32/bf16")
    for preset, r in rows:
        name = METRIC[preset]
        a, b = r["32-true"]["metric"], r["bf16-mixed"]["metric"]
        scale = 100 if name == "val/acc" else 1  # accuracy in percent
        diff, tol = scale * (b - a), scale * TOLERANCE[name]
        print(f"{preset:<18} {steps[preset]:>5} {name:<8} {scale * a:8.4f} {scale * b:8.4f} {diff:+8.4f} {tol:6.3f}  "
              f"{'yes' if abs(diff) <= tol else 'NO ':<4} {r['32-true']['fit_cpu']:.0f}/{r['bf16-mixed']['fit_cpu']:.0f}")


if __name__ == "__main__":
    main()
