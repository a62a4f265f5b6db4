"""The task function behind ``python train.py``: one run, from a composed config to metrics.json."""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning_fabric.utilities.rank_zero import rank_zero_only

from rnnexp.runtime.checkpoints import check_fits, latest_checkpoint
from rnnexp.runtime.terminal import metrics_table, quiet_lightning
from rnnexp.compat.lightning import extend_csv_header
from rnnexp.errors import ConfigError, UserError
from rnnexp.models.tasks.step_logging import scalar_metrics
from rnnexp.runtime.loggers import finish_wandb
from rnnexp.runtime.precision import resolve_precision
from rnnexp.runtime.run_log import HeldRunLog, record_resume
from rnnexp.runtime.allocator import set_allocator
from rnnexp.runtime.threads import set_threads
from rnnexp.runtime.trainer_checks import check_trainer

log = logging.getLogger(__name__)


def _instantiate_all(group: Optional[DictConfig]) -> List[Any]:
    """Every node of a group such as ``callbacks`` or ``logger`` that has a ``_target_``."""
    if not group:
        return []
    return [instantiate(node) for node in group.values() if isinstance(node, DictConfig) and "_target_" in node]


def _sweep_callbacks(cfg: DictConfig) -> List[pl.Callback]:
    """The pruning callback when this job is a trial of an ``hydra/sweeper=rnnexp_optuna`` sweep."""
    from rnnexp.callbacks.optuna_pruning import for_this_job

    pruning = for_this_job(cfg.get("optimized_metric"))
    return [] if pruning is None else [pruning]


def _cluster_callbacks(cfg: DictConfig) -> List[pl.Callback]:
    """Inside a SLURM job: save a resume checkpoint when SLURM signals a time limit or preemption."""
    if "SLURM_JOB_ID" not in os.environ:
        return []
    from rnnexp.callbacks.requeue import SaveOnRequeueSignal

    return [SaveOnRequeueSignal(str(Path(cfg.paths.output_dir) / "checkpoints"))]


def build(cfg: DictConfig):
    """Instantiate the datamodule, model, callbacks, loggers and trainer of a composed config."""
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model, **datamodule.spec().model_kwargs())
    resolve_precision(cfg, model, datamodule)  # trainer.precision=auto: probed on this model, logged
    # model=auto becomes the class it picked, so config.yaml records what ran.
    cfg.model._target_ = f"{type(model).__module__}.{type(model).__qualname__}"
    callbacks = _instantiate_all(cfg.get("callbacks")) + _sweep_callbacks(cfg) + _cluster_callbacks(cfg)
    loggers = _instantiate_all(cfg.get("logger"))
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    return datamodule, model, trainer


def run(cfg: DictConfig) -> Optional[float]:
    """Seed, build, fit, test with the best checkpoint, write ``metrics.json``; return ``cfg.optimized_metric``."""
    failed = True
    held = HeldRunLog()  # train.log is written once the run is accepted: a refused resume writes nothing
    trained: List[bool] = []  # set once an optimizer step has run: from then on the run directory is kept
    try:
        value = _run(cfg, held, trained)
        failed = False
        return value
    except Exception as exc:
        if cfg.get("resume") and held.state == "held":
            held.refuse()  # a refused resume: nothing written
        # A fresh run refused before it trained (a bad value, a bad data file) leaves no empty run.
        elif cfg.get("resume") or trained or not _remove_unused_run_dir(cfg, held):
            held.record_failure(exc)
        raise
    finally:
        held.accept()
        # Lightning's WandbLogger never finishes its run: without this the next job of a
        # multirun would log into this one's run. A failed job's run is marked failed.
        finish_wandb(failed=failed)


def _remove_unused_run_dir(cfg: DictConfig, held: HeldRunLog) -> bool:
    """Remove the directory Hydra made for a single run that failed before its first training step.

    Hydra creates the run directory (``.hydra/``, ``train.log``) before the task function can look
    at the config, and some input is only read inside ``fit`` (data files, the optimizer), so a bad
    value would leave a run that never trained behind. Only a fresh single run's own directory is
    removed (the caller checks that no step ran and that it is no resume); a multirun's job never.
    """
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.RUN:
        return False
    output_dir = Path(cfg.paths.output_dir)
    if Path(HydraConfig.get().runtime.output_dir).resolve() != output_dir.resolve() or not output_dir.is_dir():
        return False
    held.refuse()  # closes train.log while it is still held
    for handler in held.files:  # and after the run was accepted: detached, or the next record reopens it
        logging.getLogger().removeHandler(handler)
        handler.close()
    shutil.rmtree(output_dir, ignore_errors=True)
    return True


def _validation_enabled(trainer: pl.Trainer, datamodule) -> bool:
    return trainer.limit_val_batches != 0 and type(datamodule).val_dataloader is not pl.LightningDataModule.val_dataloader


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(text)
    os.replace(partial, path)


def _keep_csv_history(trainer: pl.Trainer) -> None:
    # Lightning's CSVLogger deletes an existing metrics.csv when it starts; in a resumed run
    # that file is the history of the run before the crash.
    for logger in trainer.loggers:
        if isinstance(logger, pl.loggers.CSVLogger):
            old = Path(logger.log_dir) / "metrics.csv"
            if old.is_file():
                stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
                old.rename(old.with_name(f"metrics.before_resume_{stamp}.csv"))
                log.info("Kept the metrics logged before the resume in %s", old.parent)


def _csv_header_from_file(trainer: pl.Trainer) -> None:
    # Lightning's CSV writer rewrites metrics.csv with the columns it has seen itself when new ones
    # appear; under ddp_spawn the fit ran in child processes, so the main process's writer has seen
    # none, and the test's first save fails ("dict contains fields not in fieldnames").
    for logger in trainer.loggers:
        if isinstance(logger, pl.loggers.CSVLogger) and trainer.is_global_zero:
            path = Path(logger.experiment.metrics_file_path)
            if path.is_file():
                with path.open(newline="") as file:
                    header = next(csv.reader(file), [])
                extend_csv_header(logger.experiment, header)


def _checkpoint_to_start_from(cfg: DictConfig) -> Optional[str]:
    resume, ckpt_path = cfg.get("resume"), cfg.get("ckpt_path")
    if resume and ckpt_path:
        raise ConfigError("ckpt_path", ckpt_path, "give either resume=<run dir> or ckpt_path=<file>, not both")
    if resume:
        return str(latest_checkpoint(Path(resume)))
    if ckpt_path and not Path(ckpt_path).is_file():
        raise ConfigError("ckpt_path", ckpt_path, "no such checkpoint file; give the path of a .ckpt file")
    return ckpt_path


def _refuse_ddp_in_multirun(cfg: DictConfig) -> None:
    # Lightning starts extra DDP ranks by re-running sys.argv: under -m every rank would run the
    # whole sweep. Not so when the cluster starts one process per rank (submitit on SLURM, torchrun).
    strategy = str(cfg.trainer.get("strategy", ""))
    if strategy.startswith("ddp") and "spawn" not in strategy and HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        launcher = str(OmegaConf.select(hydra_cfg, "launcher._target_", default="") or "")
        from lightning_fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

        external = "submitit" in launcher or SLURMEnvironment.detect() or TorchElasticEnvironment.detect()
        if hydra_cfg.mode == RunMode.MULTIRUN and not external:
            raise ConfigError("trainer.strategy", strategy, "a multirun cannot re-launch DDP ranks; "
                              "use trainer.strategy=ddp_spawn in sweeps")


def _best_of_fit(trainer: pl.Trainer, name: Optional[str]) -> Dict[str, Any]:
    """``name`` at the best checkpoint when the checkpoint monitors it, and which value that is.

    Testing uses the best checkpoint, so a sweep that ranks trials by their last epoch ranks
    weights it never tests. The last epoch's value is kept as ``last_epoch/<name>``.
    """
    if not name:
        return {}
    checkpoint = trainer.checkpoint_callback
    score = getattr(checkpoint, "best_model_score", None)
    if score is None and checkpoint is not None and checkpoint.best_model_path:
        # ddp_spawn hands the main process the best path but not its score: read it from the file.
        saved = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)
        score = saved.get("callbacks", {}).get(checkpoint.state_key, {}).get("best_model_score")
    if checkpoint is None or checkpoint.monitor != name or score is None:
        return {"optimized_metric_from": "last epoch"}
    out: Dict[str, Any] = {"optimized_metric_from": f"best checkpoint ({Path(checkpoint.best_model_path).name})",
                           name: float(score)}
    if name in trainer.callback_metrics:
        out[f"last_epoch/{name}"] = float(trainer.callback_metrics[name])
    return out


def _run(cfg: DictConfig, held: HeldRunLog, trained: List[bool]) -> Optional[float]:
    quiet_lightning()
    check_trainer(cfg.get("trainer"))  # again here: configs composed in code, values a sweep sets
    _refuse_ddp_in_multirun(cfg)
    set_threads(cfg.threads)
    set_allocator(cfg.allocator)
    output_dir = Path(cfg.paths.output_dir)
    ckpt_path = _checkpoint_to_start_from(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule, model, trainer = build(cfg)
    if ckpt_path:
        check_fits(Path(ckpt_path), model.hparams)
    if rank_zero_only.rank == 0:  # after the checks: a refused run has no directory to name
        log.info("Run directory: %s (seed %s, %d torch threads)", output_dir, cfg.seed, torch.get_num_threads())
    # Written only once every check has passed: a refused resume leaves the run's files as they were.
    held.accept()
    if rank_zero_only.rank == 0:
        if cfg.get("resume"):
            record_resume(output_dir, cfg)
            _keep_csv_history(trainer)
        output_dir.mkdir(parents=True, exist_ok=True)
        # The resolved config beside Hydra's unresolved .hydra/config.yaml: what actually ran.
        _write_atomically(output_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))

    for logger in trainer.loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

    start = time.perf_counter()
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    finally:
        if trainer.global_step > 0 or ckpt_path:
            trained.append(True)
    metrics = scalar_metrics(trainer.callback_metrics)
    metrics["fit_seconds"] = time.perf_counter() - start
    validated_at_end = False
    # A resume after training had ended (killed while testing): the killed process validated every
    # epoch and its last values are in the checkpoint; the resumed one trains nothing.
    logged_before = getattr(model, "logged_at_checkpoint", {}) if ckpt_path else {}
    if not any(key.startswith("val/") for key in trainer.callback_metrics) and _validation_enabled(trainer, datamodule):
        # No validation ran: the run ended before its first one (trainer.max_steps, a short
        # limit_train_batches, val_check_interval past the end), or it was resumed after training
        # had ended (killed while testing). Validate the final weights once, so the run has its val/*.
        log.info("No validation ran during training; validating the final weights once.")
        trainer.validate(model, datamodule=datamodule, verbose=False)
        metrics.update(scalar_metrics(trainer.callback_metrics))
        validated_at_end = not any(key.startswith("val/") for key in logged_before)
        for key, value in logged_before.items():  # the last epoch's train/* and LR, as logged then
            metrics.setdefault(key, value)
    metrics.update(_best_of_fit(trainer, cfg.get("optimized_metric")))
    if validated_at_end and metrics.get("optimized_metric_from") == "last epoch":
        metrics["optimized_metric_from"] = "final weights (validated once after training: none ran during it)"

    if cfg.get("test", True):
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if not best:
            log.warning("No best checkpoint was saved; testing the weights at the end of training.")
        _csv_header_from_file(trainer)
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None, verbose=False)  # in the final table
        metrics.update(scalar_metrics(trainer.callback_metrics))
        if best:
            log.info("Tested the best checkpoint: %s", best)

    if trainer.is_global_zero:
        _write_atomically(output_dir / "metrics.json", json.dumps(metrics, indent=2, sort_keys=True))
        log.info("Final metrics:\n%s\nRun directory: %s", metrics_table(metrics), output_dir)

    name = cfg.get("optimized_metric")
    if not name:
        return None
    if name not in metrics:
        if name.startswith("val/") and not _validation_enabled(trainer, datamodule):
            log.warning("optimized_metric=%s was not logged: validation is off (trainer.limit_val_batches=0); "
                        "the run returns no value (the metrics above are in metrics.json)", name)
            return None
        raise UserError(f"optimized_metric={name!r} was not logged; logged metrics: {', '.join(sorted(metrics))}")
    value = metrics[name]
    return value if math.isfinite(value) else None
