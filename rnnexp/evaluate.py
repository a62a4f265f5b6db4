"""Score a trained language model on a split, statically and with dynamic evaluation.

    python -m rnnexp.evaluate ckpt_path=outputs/cs20_tweets/runs/<run>/checkpoints/last.ckpt \\
        dynamic=true method=rms tune=true data.eval_batch_size=1 paths.data_dir=/work/shared/data

Arguments are ``key=value`` like the training app's overrides. The model comes from the
checkpoint, the data from the run's saved ``config.yaml`` (the run directory holding
``checkpoints/``), with ``data.<key>=`` and ``paths.data_dir=`` overrides on top; the split is
read as contiguous streams (``data.batching=stream``) whatever the run trained on. The static
score is exactly ``Trainer.test``'s on the same split and batching; with ``dynamic=true`` a copy
of the weights is adapted after each window (:mod:`rnnexp.models.dynamic_eval`). ``tune=true`` picks
``lr`` (and ``decay`` for ``rms``) from a small grid on the validation split, then scores the
test split with them. The checkpoint is only read. Results go to
``<run dir>/dynamic_eval.json``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from rnnexp.runtime.arguments import parse_arguments
from rnnexp.runtime.cli import run_app
from rnnexp.data.stream_windows import StreamWindows
from rnnexp.models.dynamic_eval import DECAY_SCALES, METHODS, check_update, dynamic_score, mean_squared_gradients, run_stream
from rnnexp.errors import ConfigError, UserError, check_choice, check_positive_int
from rnnexp.generate import load_language_model
from rnnexp.runtime.allocator import set_allocator
from rnnexp.runtime.threads import set_threads

log = logging.getLogger(__name__)

SPLITS = ("test", "val")
# Per method: the default lr, and the grids tune=true searches (lr x decay). The defaults are
# the best on validation as one stream for a briefly trained cs20_tweets GRU (docs/tweets.md);
# with 64 streams 3-10x larger rates did better, but those diverge (rms) as one stream.
DEFAULT_LR = {"sgd": 0.01, "rms": 3e-5}
LR_GRID = {"sgd": [0.003, 0.01, 0.03, 0.1, 0.3], "rms": [1e-5, 3e-5, 1e-4, 3e-4, 1e-3]}
DECAY_GRID = {"sgd": [0.0], "rms": [0.0, 0.001, 0.01]}
RESULT_FILE = "dynamic_eval.json"


@dataclass
class EvaluateConfig:
    ckpt_path: Optional[str] = None
    split: str = "test"
    dynamic: bool = False
    method: str = "sgd"
    lr: Optional[float] = None  # null: DEFAULT_LR of the method (sgd 0.01, rms 3e-5)
    decay: float = 0.0  # rms: fraction of the way back to the trained weights per window
    decay_scale: str = "uniform"  # rms: uniform (one decay for every weight) | rms (decay*RMS/mean(RMS), the paper's)
    eps: float = 2e-5  # rms: added to sqrt(MS)
    ms_windows: int = 100  # rms: training windows the mean squared gradients come from
    tune: bool = False
    lr_grid: Optional[List[float]] = None  # tune: null is LR_GRID of the method
    decay_grid: Optional[List[float]] = None  # tune (rms): null is DECAY_GRID
    device: str = "auto"  # auto: cuda when there is one, else cpu
    threads: Any = "auto"  # as conf/train.yaml
    allocator: str = "cached"  # cached | system: rnnexp.runtime.allocator


def parse(argv: Sequence[str]):
    """The tool's settings, and the ``data.*`` / ``paths.*`` overrides for the run's config."""
    cfg, _, run_overrides = parse_arguments(argv, EvaluateConfig, passthrough=("data", "paths"))
    return cfg, run_overrides


def run_dir_of(ckpt: Path) -> Path:
    """The run directory: the parent of ``checkpoints/``, else the checkpoint's folder."""
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent


def load_run_config(run_dir: Path, overrides: Sequence[str]):
    """The run's resolved ``config.yaml`` with ``data.*`` overrides; ``paths.data_dir=`` moves
    every data path that lay under the run's own ``paths.data_dir``."""
    file = run_dir / "config.yaml"
    if not file.is_file():
        raise UserError(f"{file} not found: the data settings come from the run's saved config (train.py writes it); "
                        "give a checkpoint inside its run directory")
    cfg = OmegaConf.load(file)
    with open_dict(cfg):
        for arg in overrides:
            key, value = arg.split("=", 1)
            if key == "paths.data_dir":
                old = str(OmegaConf.select(cfg, "paths.data_dir") or "")
                for name, item in list(cfg.data.items()):
                    if old and isinstance(item, str) and item.startswith(old):
                        cfg.data[name] = value + item[len(old):]
                cfg.paths.data_dir = value
            elif key.startswith("paths."):
                raise UserError(f"{arg}: only paths.data_dir is used here")
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([a for a in overrides if a.startswith("data.")]))
        cfg.data.batching = "stream"
    return cfg


def load_data(cfg, vocab: List[str]):
    datamodule = instantiate(cfg.data)
    spec = datamodule.spec()
    if spec.target_kind != "next_token" or not hasattr(datamodule, "splits"):
        raise UserError(f"data {cfg.data._target_} does not give a character stream; dynamic evaluation reads data=tweets")
    if list(spec.vocab or []) != list(vocab):
        raise UserError("the data's vocabulary differs from the checkpoint's: point data.path / paths.data_dir at the "
                        "file the model was trained on (and keep data.min_count and the split settings)")
    return datamodule


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise ConfigError("device", name, "use auto, cpu, cuda or cuda:<index>") from exc


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    cfg, overrides = parse(sys.argv[1:] if argv is None else argv)
    check_choice("split", cfg.split, SPLITS)
    check_choice("method", cfg.method, METHODS)
    check_choice("decay_scale", cfg.decay_scale, DECAY_SCALES)
    check_positive_int("ms_windows", cfg.ms_windows)
    if cfg.tune and cfg.split != "test":
        raise ConfigError("split", cfg.split, "tune=true picks lr on the validation split and reports test; drop split=")
    dynamic = cfg.dynamic or cfg.tune
    lr = DEFAULT_LR[cfg.method] if cfg.lr is None else cfg.lr
    if dynamic:
        check_update(cfg.method, lr, cfg.decay, cfg.eps)
    lr_grid = LR_GRID[cfg.method] if cfg.lr_grid is None else list(cfg.lr_grid)
    decay_grid = DECAY_GRID[cfg.method] if cfg.decay_grid is None else list(cfg.decay_grid)
    if cfg.tune:
        for value in lr_grid:
            check_update(cfg.method, value, 0.0, cfg.eps)
        for value in decay_grid:
            check_update(cfg.method, lr, value, cfg.eps)
    set_threads(cfg.threads)
    set_allocator(cfg.allocator)
    device = pick_device(cfg.device)

    model = load_language_model(cfg.ckpt_path)
    net = model.net.to(device)
    run_dir = run_dir_of(Path(cfg.ckpt_path))
    run_cfg = load_run_config(run_dir, overrides)
    precision = str(OmegaConf.select(run_cfg, "trainer.precision", default="32-true"))
    datamodule = load_data(run_cfg, model.hparams.vocab)
    loaders = {"val": datamodule.val_dataloader, "test": datamodule.test_dataloader}
    ms = None
    if dynamic and cfg.method == "rms":
        train = StreamWindows(datamodule.splits["train"], datamodule.eval_batch_size, datamodule.num_steps)
        ms = mean_squared_gradients(net, (train[(0, k)] for k in range(min(len(train), cfg.ms_windows))), precision)

    start = time.perf_counter()
    result: Dict[str, Any] = {"checkpoint": str(Path(cfg.ckpt_path).resolve()), "split": cfg.split,
                              "precision": precision, "device": str(device),
                              "eval_batch_size": datamodule.eval_batch_size, "num_steps": datamodule.num_steps}
    static = run_stream(net, loaders[cfg.split](), precision)
    result.update(chars=static.chars, static={"bpc": static.bpc, "loss": static.loss})
    result.update(dynamic=None, method=None, lr=None, decay=None, decay_scale=None, eps=None, ms_windows=None,
                  tuned=False)
    if dynamic:
        decay = cfg.decay
        if cfg.tune:
            tried = []
            for lr_value in lr_grid:
                for decay_value in decay_grid:
                    val = dynamic_score(net, loaders["val"](), cfg.method, lr_value, decay_value, cfg.eps, ms,
                                        precision, cfg.decay_scale)
                    tried.append({"lr": lr_value, "decay": decay_value, "val_bpc": val.bpc})
                    log.info("tune: lr=%g decay=%g val bpc %.4f", lr_value, decay_value, val.bpc)
            best = min(tried, key=lambda t: t["val_bpc"])
            lr, decay = best["lr"], best["decay"]
            result["tuning"] = {"split": "val", "static_val_bpc": run_stream(net, loaders["val"](), precision).bpc,
                                "tried": tried}
        score = dynamic_score(net, loaders[cfg.split](), cfg.method, lr, decay, cfg.eps, ms, precision, cfg.decay_scale)
        result["dynamic"] = {"bpc": score.bpc, "loss": score.loss}
        result.update(method=cfg.method, lr=lr, decay=decay if cfg.method == "rms" else None,
                      decay_scale=cfg.decay_scale if cfg.method == "rms" else None,
                      eps=cfg.eps if cfg.method == "rms" else None,
                      ms_windows=cfg.ms_windows if cfg.method == "rms" else None, tuned=cfg.tune)
    result["seconds"] = time.perf_counter() - start
    (run_dir / RESULT_FILE).write_text(json.dumps(result, indent=2) + "\n")

    print(f"static   {cfg.split} bpc {static.bpc:.4f}  ({static.chars} chars, no adaptation)")
    if result["dynamic"] is not None:
        settings = f"method={cfg.method} lr={lr:g}" + (f" decay={result['decay']:g}" if cfg.method == "rms" else "")
        tuned = ", tuned on val" if cfg.tune else ""
        print(f"dynamic  {cfg.split} bpc {result['dynamic']['bpc']:.4f}  ({settings}{tuned}; "
              f"{result['dynamic']['bpc'] - static.bpc:+.4f} vs static)")
    print(f"wrote {run_dir / RESULT_FILE}")
    return result


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run_app(main)
