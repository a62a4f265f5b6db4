"""Text samples from seed strings at the end of each validation, as CS20's ``online_infer`` printed them.

Samples go to ``dirpath/epoch_XXX.txt`` (always), to stdout (``print_samples``), and to
every logger that can show text: ``log_text`` (wandb) or TensorBoard's ``add_text``.
They are drawn from a generator of their own, seeded with ``seed + epoch``, so sampling
never moves the training RNG (a run with and without this callback trains identically).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional, Sequence

import pytorch_lightning as pl
import torch

from rnnexp.data.vocab import Vocab
from rnnexp.errors import UserError, check_positive_int
from rnnexp.sampling import check_sampling, generate

log = logging.getLogger(__name__)

CS20_SEEDS = ("Hillary", "I", "R", "T", "@", "N", "M", ".", "G", "A", "W")


class SampleText(pl.Callback):
    def __init__(
        self,
        seeds: Sequence[str] = CS20_SEEDS,
        length: int = 200,
        temperature: float = 0.8,
        top_k: Optional[int] = None,
        every_n_epochs: int = 1,
        dirpath: Optional[str] = None,
        seed: int = 0,
        print_samples: bool = True,
    ) -> None:
        check_positive_int("length", length)
        check_positive_int("every_n_epochs", every_n_epochs)
        check_sampling(temperature, top_k)
        self.seeds = [str(s) for s in seeds]
        self.length, self.temperature, self.top_k = length, temperature, top_k
        self.every_n_epochs, self.dirpath, self.seed, self.print_samples = every_n_epochs, dirpath, seed, print_samples

    def samples(self, pl_module: pl.LightningModule, epoch: int) -> List[str]:
        vocab = Vocab(pl_module.hparams.vocab)
        generator = torch.Generator().manual_seed(self.seed + epoch)
        usable = []
        for seed in self.seeds:
            if not seed or (vocab.missing(seed) and vocab.unk_index is None):
                log.warning("Sample seed %r has characters outside the vocabulary; skipped", seed)
                continue
            usable.append(seed)
        if not usable:
            return []
        return generate(pl_module.net, vocab, usable, self.length, self.temperature, self.top_k, generator)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        if trainer.sanity_checking or not trainer.is_global_zero or (epoch + 1) % self.every_n_epochs:
            return
        if not pl_module.hparams.get("vocab"):
            raise UserError("callbacks.samples needs a model with a vocabulary (data=tweets, model=lm)")
        texts = self.samples(pl_module, epoch)
        if not texts:
            return
        folder = Path(self.dirpath or Path(trainer.default_root_dir) / "samples")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"epoch_{epoch:03d}.txt").write_text(
            f"# epoch {epoch}, step {trainer.global_step}, temperature {self.temperature}, top_k {self.top_k}\n"
            + "\n\n".join(texts) + "\n",
            encoding="utf-8",
        )
        if self.print_samples:
            print(f"Samples after epoch {epoch} (step {trainer.global_step}):")
            for text in texts:
                print("\t" + text.replace("\n", "\n\t"))
        for logger in trainer.loggers:
            if hasattr(logger, "log_text"):
                logger.log_text(key="samples", columns=["epoch", "text"], data=[[epoch, t] for t in texts],
                                step=trainer.global_step)
            elif hasattr(getattr(logger, "experiment", None), "add_text"):
                logger.experiment.add_text("samples", "\n\n".join(f"    {t}" for t in texts), trainer.global_step)
